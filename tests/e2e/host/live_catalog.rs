//! The catalog of a running `hearth serve`: a valid edit is swapped in, a broken one is
//! refused with its line and column while the old catalog keeps serving.

use std::time::Duration;

use crate::helpers::{fixture_home, fixture_model_entry};
use crate::support::server::Server;

/// The model ids `GET /v1/models` lists.
async fn listed_models(server: &Server) -> Vec<String> {
    let models = server.get("/v1/models").await;
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_corrupt_catalog_edit_is_refused_with_line_and_column_and_the_old_catalog_keeps_serving()
{
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let catalog_path = home.path().join("catalog.toml");
    let catalog = std::fs::read_to_string(&catalog_path).unwrap();
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "before").await.0, 200);

    let broken = format!("{catalog}[[models]]\nid = = \"half-typed\"\n");
    let line = broken[..broken.find("id = =").unwrap()].matches('\n').count() + 1;
    std::fs::write(&catalog_path, &broken).unwrap();
    let error = server
        .eventually(Duration::from_secs(15), "the edit is refused", || async {
            let profile = server.get("/api/profile").await;
            let error = profile["catalog"]["error"].clone();
            (!error.is_null()).then_some(error)
        })
        .await;
    assert_eq!(error["line"], line, "{error}");
    assert_eq!(error["column"], 6, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains(&format!("catalog.toml:{line}:6:")),
        "{error}"
    );
    assert!(
        server
            .log()
            .contains(&format!("catalog edit refused: {}", error["message"].as_str().unwrap())),
        "{}",
        server.log()
    );
    let plugins = server.get("/api/plugins").await;
    assert_eq!(plugins["catalog_error"], error, "`hearth plugins` shows it too");

    let (status, text) = server.chat("echo", "still here").await;
    assert_eq!((status, text.as_str()), (200, "still here still here still here "));
    assert!(listed_models(&server).await.contains(&"echo".to_string()));

    // Fixing the file clears the error.
    std::fs::write(&catalog_path, &catalog).unwrap();
    server
        .eventually(Duration::from_secs(15), "the fix is accepted", || async {
            server.get("/api/profile").await["catalog"]["error"].is_null().then_some(())
        })
        .await;
}

#[tokio::test]
async fn a_valid_catalog_edit_adds_a_model_to_v1_models_and_reloads_changed_models_without_a_restart(
) {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let catalog_path = home.path().join("catalog.toml");
    let catalog = std::fs::read_to_string(&catalog_path).unwrap();
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "one two").await.0, 200);
    let ps = server.get("/api/ps").await;
    assert_eq!(ps["models"][0]["key"]["definition_revision"], 0);
    assert!(!listed_models(&server).await.contains(&"parrot".to_string()));

    let parrot = home.path().join("models").join("parrot");
    std::fs::create_dir_all(&parrot).unwrap();
    std::fs::write(parrot.join("parrot.fixture"), "tokens = 2\n").unwrap();
    // A new model, and echo's context size changed.
    let edited = format!(
        "{}{}",
        catalog.replace("context_size = 512", "context_size = 1024"),
        fixture_model_entry("parrot", 256)
    );
    std::fs::write(&catalog_path, edited).unwrap();
    server
        .eventually(Duration::from_secs(15), "the new model is listed", || async {
            listed_models(&server).await.contains(&"parrot".to_string()).then_some(())
        })
        .await;
    let (status, text) = server.chat("parrot", "polly wants").await;
    assert_eq!((status, text.as_str()), (200, "polly wants "));

    // echo's definition changed, so its idle model went and the next request loads afresh.
    server
        .eventually(Duration::from_secs(15), "echo's old model is unloaded", || async {
            let ps = server.get("/api/ps").await;
            let models = ps["models"].as_array().unwrap().clone();
            models.iter().all(|model| model["key"]["model_id"] != "echo").then_some(())
        })
        .await;
    assert_eq!(server.chat("echo", "one two").await.0, 200);
    let ps = server.get("/api/ps").await;
    let echo = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["key"]["model_id"] == "echo")
        .cloned()
        .unwrap();
    assert!(echo["key"]["definition_revision"].as_u64().unwrap() > 0, "{echo}");
    let log = server.log();
    assert!(log.contains("catalog reloaded"), "{log}");
    assert!(
        log.contains(r#"+models ["parrot"], -models [], changed ["echo", "slow", "broken"]"#),
        "{log}"
    );
}
