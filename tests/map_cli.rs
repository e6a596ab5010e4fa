//! `map` run as a process on real provider samples.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn map(args: &[&str], stdin: Option<&str>) -> (Output, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .current_dir(root())
        .arg("map")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn github_pull_request_webhook_with_event() {
    let (out, signals) = map(
        &[
            "--descriptor",
            "descriptors/github.yaml",
            "--input",
            "fixtures/github/webhook.pull_request.opened.json",
            "--event",
            "pull_request",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(signals.as_array().unwrap().len(), 1);
    assert_eq!(signals[0]["kind"], "pr_opened");
    assert_eq!(signals[0]["provider"], "github");
    assert_eq!(
        signals[0]["tenant_id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert!(stderr(&out).contains("1 signal(s), 0 skipped"));
}

#[test]
fn github_event_from_a_headers_file() {
    let dir = std::env::temp_dir().join(format!("poblysh-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let headers = dir.join("headers.json");
    std::fs::write(
        &headers,
        r#"{"X-GitHub-Event": "release", "X-GitHub-Delivery": "abc"}"#,
    )
    .unwrap();
    let (out, signals) = map(
        &[
            "--descriptor",
            "descriptors/github.yaml",
            "--input",
            "fixtures/github/webhook.release.published.json",
            "--headers",
            headers.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(signals[0]["kind"], "release_published");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slack_from_stdin_with_skipped_items_on_stderr() {
    let message = std::fs::read_to_string(
        root().join("fixtures/slack/events.event_callback.message_channels.json"),
    )
    .unwrap();
    let (out, signals) = map(
        &[
            "--descriptor",
            "descriptors/slack.yaml",
            "--input",
            "-",
            "--as",
            "webhook",
        ],
        Some(&message),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(signals[0]["kind"], "message_received");
    assert_eq!(signals[0]["summary"], "Live long and prospect.");

    // A bot echo (a message with a subtype) is filtered out, and says so.
    let edited = message.replace(
        "\"type\": \"message\",",
        "\"type\": \"message\", \"subtype\": \"bot_message\",",
    );
    assert_ne!(edited, message);
    let (out, signals) = map(
        &[
            "--descriptor",
            "descriptors/slack.yaml",
            "--input",
            "-",
            "--as",
            "webhook",
        ],
        Some(&edited),
    );
    assert!(out.status.success());
    assert_eq!(signals, serde_json::json!([]));
    let err = stderr(&out);
    assert!(err.contains("skipped item 0 (id 1355517523.000005): filtered out: the condition on `$.event.subtype` does not hold"), "{err}");
}

#[test]
fn linear_graphql_page_is_read_as_a_page() {
    let (out, signals) = map(
        &[
            "--descriptor",
            "descriptors/linear.yaml",
            "--input",
            "fixtures/linear/graphql.issues.page.json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(signals[0]["kind"], "issue_updated");
    assert_eq!(signals[0]["external_id"], "POR-2");
    assert_eq!(signals[0]["priority"], "medium");
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let (out, _) = map(
        &[
            "--descriptor",
            "descriptors/slack.yaml",
            "--input",
            "-",
            "--as",
            "webhook",
        ],
        Some("{\"a\": 1,\n}"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: -:2:1: invalid JSON: trailing comma"),
        "{}",
        stderr(&out)
    );

    let (out, _) = map(
        &[
            "--descriptor",
            "tests/invalid/03-misspelled-auth-method.yaml",
            "--input",
            "fixtures/slack/events.event_callback.message_channels.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("auth.method: unknown value `apikey`"),
        "{}",
        stderr(&out)
    );

    let (out, _) = map(
        &[
            "--descriptor",
            "descriptors/github.yaml",
            "--input",
            "fixtures/github/webhook.push.json",
            "--as",
            "webhook",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no event type: expected header `X-GitHub-Event`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--event"), "{}", stderr(&out));

    let (out, _) = map(
        &[
            "--descriptor",
            "descriptors/github.yaml",
            "--input",
            "no/such/file.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read no/such/file.json"),
        "{}",
        stderr(&out)
    );
}
