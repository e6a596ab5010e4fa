//! Hostile descriptors against the real server: what used to abort the process
//! (deep templates), exhaust its memory (YAML aliases) or burn its CPU
//! (repeated descendant segments) is a 422, and the server stays up.

use reqwest::Method;

use crate::api::harness::{Backend, Server, send};

fn linear(id: &str) -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/descriptors/linear.yaml"
    ))
    .unwrap()
    .replace("id: linear", &format!("id: {id}"))
}

async fn put_yaml(server: &Server, id: &str, yaml: String) -> (u16, serde_json::Value) {
    send(
        server
            .operator(Method::PUT, &format!("/providers/{id}"))
            .header("content-type", "application/yaml")
            .body(yaml),
    )
    .await
}

#[tokio::test]
async fn hostile_descriptors_are_refused_and_the_server_stays_up() {
    let server = Server::start(Backend::Sqlite).await;
    let template = "\"{{data.identifier}} {{action}}: {{data.title}}\"";
    let cases = [
        // 1,500 nested blocks: used to overflow the worker's stack when rendered.
        (
            "deep_blocks",
            linear("deep_blocks").replacen(
                template,
                &format!(
                    "\"{}x{}\"",
                    "{{#if action}}".repeat(1500),
                    "{{/if}}".repeat(1500)
                ),
                1,
            ),
            "nests 1500 levels",
        ),
        // 1,000 nested subexpressions: used to abort during validation.
        (
            "deep_subexpressions",
            linear("deep_subexpressions").replacen(
                template,
                &format!(
                    "\"{{{{action {}action{}}}}}\"",
                    "(json ".repeat(1000),
                    ")".repeat(1000)
                ),
                1,
            ),
            "nests 1000 levels",
        ),
        // A 64 KB string behind 8,192 aliases: used to expand to half a GB.
        (
            "aliases",
            format!(
                "{}\nx-big: &big \"{}\"\nx-list:\n{}",
                linear("aliases"),
                "x".repeat(64 * 1024),
                "  - *big\n".repeat(8192)
            ),
            "expands to more than 4 MiB",
        ),
        // Three descendant segments: seconds of CPU per item.
        (
            "descendants",
            linear("descendants").replacen("idPath: $.data.id", "idPath: $..*..*..*", 1),
            "descendant segment",
        ),
    ];
    for (id, yaml, expected) in cases {
        let (status, body) = put_yaml(&server, id, yaml).await;
        assert_eq!(status, 422, "{id}: {body}");
        assert!(body.to_string().contains(expected), "{id}: {body}");
        let (status, _) = send(server.anonymous(Method::GET, "/healthz")).await;
        assert_eq!(status, 200, "{id}: the server is down");
    }
}
