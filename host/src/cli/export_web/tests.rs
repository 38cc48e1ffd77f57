//! Tests of the static export: the files it writes, the shape of its catalog, and the
//! folders it refuses.

use std::path::Path;

use super::*;

const SHIPPED: &str = include_str!("../../../../catalog.toml");
const MODELS_URL: &str = "http://127.0.0.1:9/models/";

fn shipped() -> Catalog {
    Catalog::parse(SHIPPED, Path::new("catalog.toml")).unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_export_writes_the_page_its_files_and_the_json_browser_mode_reads() {
    let dir = tempfile::tempdir().unwrap();
    let exported = export(&shipped(), dir.path(), Some(MODELS_URL)).unwrap();
    for (name, body) in static_files().filter(|(name, _)| *name != "app/site.json") {
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), body, "{name}");
    }
    for name in ["app/engine/jinja.js", "app/shaders/decode.wgsl", "app/templates/chatml.jinja"] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    let site = read_json(&dir.path().join("app/site.json"));
    assert_eq!(site["static_export"], true);
    assert_eq!(site["catalog"], "catalog.json");
    assert_eq!(site["architectures"], "architectures.json");
    assert_eq!(read_json(&dir.path().join("architectures.json")), hearth_model::arch::as_json());
    assert_eq!(exported.files, static_files().count() + 2);
    assert!(exported.without_url.is_empty(), "{:?}", exported.without_url);
}

#[test]
fn the_exported_catalog_lists_webgpu_models_with_their_urls_the_webgpu_tiers_and_adapters() {
    let dir = tempfile::tempdir().unwrap();
    export(&shipped(), dir.path(), Some(MODELS_URL)).unwrap();
    let catalog = read_json(&dir.path().join("catalog.json"));
    let smol = catalog["models"].as_array().unwrap().iter().find(|m| m["id"] == "smollm2-135m");
    let smol = smol.expect("SmolLM2 is exported");
    assert_eq!(smol["name"], "SmolLM2-135M");
    let artifact = &smol["artifacts"][0];
    assert_eq!(artifact["url"], "http://127.0.0.1:9/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(artifact["format"], "gguf");
    assert_eq!(artifact["size_bytes"], 98_362_432);
    let tiers = catalog["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 5);
    assert!(tiers.iter().all(|tier| tier["backend"] == "webgpu"), "{tiers:?}");
    assert_eq!(tiers[0]["models"], json!(["qwen3-1.7b", "smollm2-135m"]));
    assert!(tiers[0]["memory_required_bytes"].as_u64().unwrap() > 0);
    assert_eq!(catalog["adapters"].as_array().unwrap().len(), 8);
    assert_eq!(catalog["idle"]["soft_s"], 120.0);
    // Every exported model has a file the in-page engine reads.
    for model in catalog["models"].as_array().unwrap() {
        for artifact in model["artifacts"].as_array().unwrap() {
            assert_eq!(artifact["format"], "gguf", "{model}");
            assert!(artifact["backends"].as_array().unwrap().contains(&json!("webgpu")), "{model}");
        }
    }
}

#[test]
fn without_models_url_a_model_keeps_its_catalog_url_and_one_without_a_url_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let exported = export(&shipped(), dir.path(), None).unwrap();
    assert!(exported.without_url.contains(&"smollm2-135m".to_string()), "{exported:?}");
    assert!(exported.models.contains(&"qwen2.5-0.5b-instruct".to_string()), "{exported:?}");
    let catalog = read_json(&dir.path().join("catalog.json"));
    let models = catalog["models"].as_array().unwrap();
    assert!(models.iter().all(|model| model["id"] != "smollm2-135m"));
    let qwen = models.iter().find(|model| model["id"] == "qwen2.5-0.5b-instruct").unwrap();
    let url = qwen["artifacts"][0]["url"].as_str().unwrap();
    assert!(url.ends_with("/qwen2.5-0.5b-instruct-q8_0.gguf"), "{url}");
}

#[test]
fn a_folder_that_is_not_empty_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let error = export(&shipped(), dir.path(), Some(MODELS_URL)).unwrap_err().to_string();
    assert!(error.contains("is not empty"), "{error}");
    assert!(error.contains(&dir.path().display().to_string()), "{error}");
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["notes.txt"]);
}

#[test]
fn an_empty_or_missing_folder_is_written() {
    let dir = tempfile::tempdir().unwrap();
    export(&shipped(), dir.path(), Some(MODELS_URL)).unwrap();
    let nested = dir.path().join("new/site");
    export(&shipped(), &nested, Some(MODELS_URL)).unwrap();
    assert!(nested.join("index.html").is_file());
}

#[test]
fn a_file_name_becomes_one_url_path_segment() {
    assert_eq!(url_segment("SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(url_segment("a b#c/d.gguf"), "a%20b%23c%2Fd.gguf");
}
