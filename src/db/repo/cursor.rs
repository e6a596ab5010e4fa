//! Opaque keyset cursors over `(time, id)`, newest first: the position after the
//! last row of a page. Clients pass them back unchanged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

/// The position after a row ordered by `(time desc, id desc)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The row's time.
    pub time: DateTime<Utc>,
    /// The row's id.
    pub id: Uuid,
}

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1.{}.{}", self.time.timestamp_micros(), self.id))
    }

    /// Parses the opaque text form; `None` if it is not one of ours.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '.');
        if parts.next()? != "v1" {
            return None;
        }
        let micros: i64 = parts.next()?.parse().ok()?;
        let id = Uuid::parse_str(parts.next()?).ok()?;
        let time = DateTime::from_timestamp_micros(micros)?;
        // Every stored time is within years 1-9999 (PostgreSQL refuses far
        // beyond): anything else was not made here.
        (1..=9999)
            .contains(&chrono::Datelike::year(&time))
            .then_some(Cursor { time, id })
    }
}

/// Orders `query` newest first by `(time, id)`, starts after `cursor`, and asks
/// for one row more than `limit` (to know whether a next page exists). The
/// cursor is a row-value comparison, `(time, id) < (?, ?)`: both SQLite and
/// PostgreSQL walk a composite index range for it (the equivalent `time < ?
/// OR (time = ? AND id < ?)` only narrows by the index's leading columns).
pub fn page_query<E: EntityTrait>(
    query: Select<E>,
    time: E::Column,
    id: E::Column,
    cursor: Option<Cursor>,
    limit: u64,
) -> Select<E> {
    let query = match cursor {
        None => query,
        Some(c) => query.filter(
            Expr::tuple([Expr::col(time), Expr::col(id)])
                .lt(Expr::tuple([Expr::val(c.time), Expr::val(c.id)])),
        ),
    };
    query.order_by_desc(time).order_by_desc(id).limit(limit + 1)
}

/// Cuts the rows of a `page_query` to `limit`; the cursor of the next page when
/// there was one more row.
pub fn split_page<M>(
    mut rows: Vec<M>,
    limit: u64,
    key: impl Fn(&M) -> Cursor,
) -> (Vec<M>, Option<Cursor>) {
    if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let c = Cursor {
            time: DateTime::from_timestamp_micros(1_717_200_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        let id = Uuid::now_v7();
        let far = URL_SAFE_NO_PAD.encode(format!("v1.-3217862419200000000.{id}"));
        for bad in [
            "",
            "abc",
            "djEuMS4y",
            &URL_SAFE_NO_PAD.encode("v2.1.x"),
            &far,
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
