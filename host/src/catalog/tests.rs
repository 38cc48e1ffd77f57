//! Tests of the shipped catalog and of the errors a broken one produces.

use std::path::Path;
use std::time::Duration;

use super::*;

const SHIPPED: &str = include_str!("../../../catalog.toml");

fn shipped() -> Catalog {
    Catalog::parse(SHIPPED, Path::new("catalog.toml")).unwrap()
}

#[test]
fn the_shipped_catalog_parses_to_15_tiers_8_adapters_and_the_seed_idle_policy() {
    let c = shipped();
    assert_eq!(c.tiers.len(), 15);
    assert_eq!(c.adapters.len(), 8);
    assert_eq!(c.idle.soft_timeout, Duration::from_secs(120));
    assert_eq!(c.idle.hard_timeout, Duration::from_secs(300));
    for backend in ["mlx", "llamacpp", "webgpu"] {
        let numbers: Vec<u8> = c.tiers_for(backend).map(|t| t.tier).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5], "{backend}");
    }
}

#[test]
fn the_shipped_tier_tables_match_the_seed() {
    let c = shipped();
    let rows = |backend: &str| -> Vec<(String, String)> {
        c.tiers_for(backend).map(|t| (c.tier_label(t), t.memory_label())).collect()
    };
    let llama = rows("llamacpp");
    assert_eq!(llama[2], ("Qwen3 8B / Gemma 3 12B".into(), "16 GB".into()));
    assert_eq!(llama[4], ("Llama 3.3 70B".into(), "64+ GB".into()));
    assert_eq!(rows("mlx")[4], ("Qwen3 235B".into(), "64+ GB".into()));
    assert_eq!(rows("webgpu")[4], ("Qwen3 32B".into(), "32+ GB".into()));
    let tier1 = |b: &str| c.tiers_for(b).next().unwrap().models.clone();
    assert_eq!(tier1("llamacpp"), ["qwen3-0.6b", "smollm2-135m", "gemma3-270m"]);
    assert_eq!(tier1("mlx"), ["gemma3n-e2b", "smollm2-135m"]);
    assert_eq!(tier1("webgpu"), ["qwen3-1.7b", "smollm2-135m"]);
    assert!(c.tiers_for("webgpu").all(|t| t.memory_kind == MemoryKind::GpuMemory));
    assert!(c.tiers_for("mlx").all(|t| t.memory_kind == MemoryKind::Ram));
}

#[test]
fn the_shipped_test_models_name_their_real_files() {
    let c = shipped();
    let smol = &c.model("smollm2-135m").unwrap().artifacts[0];
    assert_eq!(smol.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(smol.size_bytes, Some(98_362_432));
    assert_eq!(smol.backends, ["llamacpp", "mlx", "webgpu"]);
    let gemma = &c.model("gemma3-270m").unwrap().artifacts[0];
    assert_eq!(gemma.file, "gemma-3-270m-q4_k_m.gguf");
    assert_eq!(gemma.backends, ["llamacpp", "mlx", "webgpu"]);
}

#[test]
fn the_seeds_adapters_sit_on_catalog_models_and_have_no_downloads() {
    let c = shipped();
    let chatbot = c.adapter("chatbot").unwrap();
    assert_eq!(chatbot.title, "Chatbot LoRA");
    assert_eq!(chatbot.purpose, "General conversational improvements");
    assert_eq!(c.model(&chatbot.base_model).unwrap().parameters.as_deref(), Some("0.5B"));
    assert_eq!(c.adapters_for("qwen3-1.7b").count(), 3);
    assert!(c.adapters[..7].iter().all(|a| a.artifacts.is_empty()));
}

#[test]
fn the_test_adapter_is_the_eighth_with_a_checked_file_for_every_backend() {
    let c = shipped();
    let signoff = &c.adapters[7];
    assert_eq!(signoff.name, "smollm2-signoff");
    assert_eq!(signoff.base_model, "smollm2-135m");
    let [artifact] = signoff.artifacts.as_slice() else {
        panic!("one artifact: {:?}", signoff.artifacts)
    };
    assert_eq!(artifact.backends, ["llamacpp", "mlx", "webgpu"]);
    assert_eq!(artifact.format, "gguf");
    assert!(
        artifact.size_bytes.is_some()
            && artifact.sha256.as_ref().is_some_and(|sha| sha.len() == 64)
    );
}

#[test]
fn the_shipped_catalog_loads_from_its_path() {
    // The checkout under test, as cargo names it at run time: a test binary built in
    // another checkout sharing the target folder carries that checkout's folder.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = Path::new(&manifest).join("../catalog.toml");
    assert_eq!(Catalog::from_path(&path).unwrap(), shipped());
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let err = Catalog::from_path(Path::new("/nonexistent/catalog.toml")).unwrap_err();
    assert!(matches!(err, CatalogError::Read { .. }));
    assert!(err.to_string().starts_with("/nonexistent/catalog.toml: cannot read"), "{err}");
}

#[test]
fn an_idle_section_may_be_left_out() {
    let c = Catalog::parse("", Path::new("empty.toml")).unwrap();
    assert_eq!(c.idle, IdlePolicy::default());
}

const MODEL: &str = r#"
[[models]]
id = "tiny"
name = "Tiny"
context_size = 512
[[models.artifacts]]
backends = ["llamacpp"]
format = "gguf"
file = "tiny.gguf"
"#;

/// Each broken catalog, the `line:col` its error must carry, and a phrase of the reason.
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "unknown key",
        "[idle]\nsoft_timeout = \"2m\"\nsoft_timout = \"3m\"\n",
        "3:1",
        "unknown field `soft_timout`",
    ),
    ("bad type", "[[models]]\nid = \"x\"\nname = \"X\"\ncontext_size = \"big\"\n", "4:16", "invalid type"),
    (
        "unknown model in a tier",
        "[[tier_tables]]\nbackend = \"llamacpp\"\nmemory_kind = \"ram\"\ntiers = [{ tier = 1, models = [\"tiny\", \"ghost\"], memory_required = \"4 GB\" }]\n",
        "4:40",
        "model `ghost`, which no [[models]] entry defines",
    ),
    (
        "adapter with a missing base",
        "[[adapters]]\nname = \"chat\"\ntitle = \"Chat\"\nbase_model = \"0.5B\"\npurpose = \"talk\"\n",
        "4:14",
        "base model `0.5B`",
    ),
    ("duplicate model id", "[[models]]\nid = \"tiny\"\nname = \"again\"\ncontext_size = 1\n", "2:6", "duplicate model id `tiny`"),
    (
        "duplicate adapter name",
        "[[adapters]]\nname = \"a\"\ntitle = \"A\"\nbase_model = \"tiny\"\npurpose = \"p\"\n[[adapters]]\nname = \"a\"\ntitle = \"A\"\nbase_model = \"tiny\"\npurpose = \"p\"\n",
        "7:8",
        "duplicate adapter name `a`",
    ),
    (
        "tiers out of order",
        "[[tier_tables]]\nbackend = \"webgpu\"\nmemory_kind = \"gpu-memory\"\ntiers = [\n  { tier = 1, models = [\"tiny\"], memory_required = \"4 GB\" },\n  { tier = 3, models = [\"tiny\"], memory_required = \"8 GB\" },\n]\n",
        "6:12",
        "tier 3 is out of order",
    ),
    (
        "a tier table without a backend",
        "[[tier_tables]]\nmemory_kind = \"ram\"\ntiers = []\n",
        "1:1",
        "missing field `backend`",
    ),
    (
        "a zero memory requirement",
        "[[tier_tables]]\nbackend = \"mlx\"\nmemory_kind = \"ram\"\ntiers = [{ tier = 1, models = [\"tiny\"], memory_required = \"0 GB\" }]\n",
        "4:59",
        "must be positive",
    ),
    (
        "a traversal file name",
        "[[models]]\nid = \"evil\"\nname = \"Evil\"\ncontext_size = 1\n[[models.artifacts]]\nbackends = [\"llamacpp\"]\nformat = \"gguf\"\nfile = \"../../etc/passwd\"\n",
        "8:8",
        "climbs out of the models folder",
    ),
    (
        "an absolute file name",
        "[[models]]\nid = \"evil\"\nname = \"Evil\"\ncontext_size = 1\n[[models.artifacts]]\nbackends = [\"llamacpp\"]\nformat = \"gguf\"\nfile = \"/etc/passwd\"\n",
        "8:8",
        "absolute path",
    ),
    (
        "a companion in another folder",
        "[[models]]\nid = \"m\"\nname = \"M\"\ncontext_size = 1\n[[models.artifacts]]\nbackends = [\"mlx\"]\nformat = \"safetensors\"\nfile = \"m/model.safetensors\"\ncompanions = [\"config.json\", \"../tokenizer.json\"]\n",
        "9:30",
        "companion `../tokenizer.json` must be a plain name",
    ),
    (
        "a companion that is the file itself",
        "[[models]]\nid = \"m\"\nname = \"M\"\ncontext_size = 1\n[[models.artifacts]]\nbackends = [\"mlx\"]\nformat = \"safetensors\"\nfile = \"m/model.safetensors\"\ncompanions = [\"model.safetensors\"]\n",
        "9:15",
        "is the artifact's own file",
    ),
    ("a bad duration", "[idle]\nhard_timeout = \"5 minutes\"\n", "2:16", "unknown duration unit `minutes`"),
    ("soft after hard", "[idle]\nsoft_timeout = \"10m\"\nhard_timeout = \"5m\"\n", "2:16", "longer than hard_timeout"),
    ("an id with a slash", "[[models]]\nid = \"a/b\"\nname = \"A\"\ncontext_size = 1\n", "2:6", "may only use letters"),
    ("an RPC server without a port", "[rpc]\nservers = [\"gpu-box\"]\n", "2:12", "is not host:port"),
    ("an RPC server twice", "[rpc]\nservers = [\"h:1\", \"h:1\"]\n", "2:19", "listed twice"),
    ("an unknown split", "[placement]\nsplit = \"tensor\"\n", "2:9", "not one of layer, row, none"),
    ("a main device split by layer", "[placement]\nmain = \"CUDA1\"\n", "2:8", "needs `split = \"row\"`"),
    ("an empty device list", "[placement]\ndevices = \" \"\n", "2:11", "`devices` is empty"),
];

#[test]
fn broken_catalogs_are_rejected_at_the_right_line_and_column_with_the_reason() {
    for (what, body, at, reason) in BROKEN {
        let text = format!("{MODEL}{body}");
        // The fixture model takes the first lines; shift the expected line past it.
        let shift = MODEL.lines().count();
        let (line, col) = at.split_once(':').unwrap();
        let expected_at = format!("{}:{col}", line.parse::<usize>().unwrap() + shift);
        let err = Catalog::parse(&text, Path::new("broken.toml")).expect_err(what);
        let message = err.to_string();
        assert!(message.starts_with(&format!("broken.toml:{expected_at}: ")), "{what}: {message}");
        assert!(message.contains(reason), "{what}: {message}");
    }
}

#[test]
fn the_isolation_section_sets_a_default_per_backend_choices_and_the_stall_timeout() {
    let text = "[isolation]\ndefault = \"in-process\"\nstall_timeout = \"30s\"\n[isolation.backends]\nllamacpp = \"process\"\n";
    let isolation = Catalog::parse(text, Path::new("c.toml")).unwrap().isolation;
    assert_eq!(isolation.stall_timeout, Duration::from_secs(30));
    assert_eq!(isolation.for_backend("llamacpp", Isolation::InProcess), Isolation::Process);
    assert_eq!(isolation.for_backend("webgpu", Isolation::Process), Isolation::InProcess);
    let unset = shipped().isolation;
    assert_eq!(
        unset.for_backend("llamacpp", Isolation::Process),
        Isolation::Process,
        "the command decides"
    );
    assert_eq!(unset.stall_timeout, Duration::from_secs(120));
}

#[test]
fn an_unknown_isolation_or_a_zero_stall_timeout_is_refused_at_its_line() {
    let error =
        Catalog::parse("[isolation]\ndefault = \"thread\"\n", Path::new("c.toml")).unwrap_err();
    assert_eq!(error.location().map(|at| at.0), Some(2), "{error}");
    let error =
        Catalog::parse("[isolation]\n\nstall_timeout = \"0s\"\n", Path::new("c.toml")).unwrap_err();
    assert_eq!(error.location(), Some((3, 17)), "{error}");
    assert!(error.to_string().contains("longer than zero"), "{error}");
}

#[test]
fn the_rpc_section_lists_servers_and_the_shipped_catalog_names_none() {
    let text = "[rpc]\nservers = [\"192.168.1.20:50052\", \"gpu-box:50053\"]\n";
    let catalog = Catalog::parse(text, Path::new("c.toml")).unwrap();
    assert_eq!(catalog.rpc_servers, ["192.168.1.20:50052", "gpu-box:50053"]);
    assert!(shipped().rpc_servers.is_empty());
}

#[test]
fn the_placement_section_sets_devices_split_and_main_device_and_the_command_line_wins_each() {
    let text = "[placement]\ndevices = \"CUDA0,CUDA1\"\nsplit = \"row\"\nmain = \"CUDA1\"\n";
    let placement = Catalog::parse(text, Path::new("c.toml")).unwrap().placement;
    assert_eq!(
        placement,
        Placement {
            devices: Some("CUDA0,CUDA1".into()),
            split: Some(SplitMode::Row),
            main: Some("CUDA1".into())
        }
    );
    assert_eq!(placement.describe(), "CUDA0,CUDA1, split by row, main device CUDA1");
    let command_line = Placement { split: Some(SplitMode::None), ..Placement::default() };
    let chosen = command_line.over(&placement);
    assert_eq!(chosen.split, Some(SplitMode::None));
    assert_eq!(chosen.devices.as_deref(), Some("CUDA0,CUDA1"));
    assert_eq!(shipped().placement, Placement::default());
    assert_eq!(shipped().placement.describe(), "every GPU, split by layer");
}
