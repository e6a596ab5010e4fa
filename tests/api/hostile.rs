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

crate::on_both_backends! {
    async fn nul_characters_and_forged_cursors_are_clear_400s(server) {
        // PostgreSQL refuses NUL in text and far-away timestamps; both used
        // to surface as 500s there.
        let tenant = uuid::Uuid::now_v7();
        let create = |body: serde_json::Value| {
            send(server.tenant(tenant, Method::POST, "/connections").json(&body))
        };
        let github = |name: &str, repo: &str| {
            serde_json::json!({
                "provider": "github", "name": name,
                "credentials": {"token": "ghp_x"}, "config": {"repos": [repo]}
            })
        };
        for body in [github("a\u{0}b", "octo/hello"), github("ok", "octo/\u{0}hello")] {
            let (status, answer) = create(body).await;
            assert_eq!(status, 400, "{answer}");
            assert!(answer.to_string().contains("NUL"), "{answer}");
        }
        let (status, created) = create(github("ok", "octo/hello")).await;
        assert_eq!(status, 201, "{created}");
        let (status, answer) = send(
            server
                .tenant(tenant, Method::PATCH, &format!("/connections/{}", created["id"].as_str().unwrap()))
                .json(&serde_json::json!({"name": "x\u{0}"})),
        )
        .await;
        assert_eq!(status, 400, "{answer}");

        let (status, answer) = send(server.tenant(tenant, Method::GET, "/signals?provider=%00")).await;
        assert_eq!(status, 400, "{answer}");
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("v1.-3217862419200000000.{}", uuid::Uuid::now_v7()));
        for path in ["/signals", "/jobs"] {
            let (status, answer) =
                send(server.tenant(tenant, Method::GET, &format!("{path}?cursor={forged}"))).await;
            assert_eq!(status, 400, "{path}: {answer}");
            assert_eq!(answer["code"], "invalid_request", "{path}: {answer}");
        }

        // A descriptor with a NUL anywhere: a 422 naming the field.
        let yaml = linear("nul_desc").replacen("description: ", "description: \"nul \\0 here\" #", 1);
        let (status, body) = put_yaml(&server, "nul_desc", yaml).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains("NUL"), "{body}");
    }
}

#[tokio::test]
async fn every_error_answer_is_a_problem() {
    let server = Server::start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let problem = |r: &reqwest::Response| {
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    // A descriptor over the 1 MiB body limit: 413, problem+json.
    let r = server
        .operator(Method::PUT, "/providers/huge")
        .header("content-type", "application/yaml")
        .body(format!(
            "id: huge\ndescription: \"{}\"\n",
            "x".repeat(1_100_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(problem(&r), "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large", "{body}");
    // A ~20 KB URL: 414, problem+json.
    let r = client
        .get(format!(
            "{}/providers?{}",
            server.base,
            "a=b&".repeat(5_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    assert_eq!(problem(&r), "application/problem+json");
    // A method webhooks are never sent with: 405, whatever the tenant segment.
    for path in [
        "/webhooks/github/y",
        "/webhooks/github/3f6b7c1e-5d1a-4c2e-9b7a-2f0c8e6d4a11",
    ] {
        let r = client
            .put(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(problem(&r), "application/problem+json", "{path}");
    }
    // The method router's own 405.
    let r = client
        .patch(format!("{}/providers", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(problem(&r), "application/problem+json");
    let (status, _) = send(server.anonymous(Method::GET, "/healthz")).await;
    assert_eq!(status, 200);
}
