//! The llama.cpp plugin as setup installs it: beside it, its companion folder of
//! llama.cpp's shared libraries and ggml's backend modules: one per CPU variant, and the
//! Vulkan one (which runs on lavapipe here).

use std::process::{Command, Output};

use crate::helpers::{stdout, RealHost, PARIS_QUESTION};
use crate::support::test_models_dir;

/// The CPU variants a CPU with these /proc/cpuinfo flags runs better than: a choice
/// among them would mean the variants were not scored.
fn outclassed_variants(flags: &str) -> &'static [&'static str] {
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    if has("avx512f") {
        &["x64", "sse42", "sandybridge", "haswell", "alderlake"]
    } else if has("avx2") {
        &["x64", "sse42", "sandybridge"]
    } else {
        &[]
    }
}

#[test]
fn the_installed_plugin_names_the_cpu_variant_it_picked_and_answers_with_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let companion = host.plugins.path().join("libhearth_llamacpp");
    let variants: Vec<String> = std::fs::read_dir(&companion)
        .expect("setup installs the companion folder beside the plugin")
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            Some(name.strip_prefix("libggml-cpu-")?.strip_suffix(".so")?.to_string())
        })
        .collect();
    assert!(variants.len() > 1, "one module per CPU variant: {variants:?}");
    // Without cargo's library path: the plugin finds its libraries through its run path.
    let listing = stdout(&host.cli_without(&["plugins"], &["LD_LIBRARY_PATH"]));
    let picked = listing
        .split("CPU variant ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("`hearth plugins` names no CPU variant:\n{listing}"));
    assert!(variants.iter().any(|v| v == picked), "{picked} is not one of {variants:?}");
    assert!(listing.contains("in libhearth_llamacpp/ beside the plugin"), "{listing}");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags = cpuinfo.lines().find(|line| line.starts_with("flags")).unwrap_or_default();
    assert!(
        !outclassed_variants(flags).contains(&picked),
        "{picked} picked on a CPU with: {flags}"
    );
    // A GCC before 13 built the AMX variant wrong: it is left out, and says so.
    let compiler = Command::new("c++").arg("--version").output().unwrap();
    let compiler = String::from_utf8_lossy(&compiler.stdout).lines().next().unwrap().to_string();
    let gcc_major =
        compiler.split_whitespace().last().and_then(|v| v.split('.').next()?.parse().ok());
    if !compiler.contains("clang") && gcc_major.is_some_and(|major: u32| major < 13) {
        assert_ne!(picked, "sapphirerapids");
        assert!(listing.contains("sapphirerapids left out"), "{listing}");
    }
    let output = host.cli_without(
        &["run", "smollm2-135m", PARIS_QUESTION, "--temperature", "0", "--max-tokens", "24"],
        &["LD_LIBRARY_PATH"],
    );
    assert!(stdout(&output).contains("Paris"), "{}", stdout(&output));
}

/// Runs `command`, which must succeed; its output.
fn succeeded(command: &mut Command) -> Output {
    let output = command.output().expect("run hearth");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn the_installed_vulkan_module_lists_lavapipe_and_answers_on_it_when_asked_by_name() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let module = host.plugins.path().join("libhearth_llamacpp/libggml-vulkan.so");
    assert!(
        module.is_file(),
        "setup builds ggml's Vulkan module and installs it beside the plugin"
    );
    // As a user starts it: no cargo library path, no ggml variable showing lavapipe.
    let hearth = |args: &[&str]| {
        let mut command = host.command(args);
        command.env_remove("LD_LIBRARY_PATH").env_remove("GGML_VK_VISIBLE_DEVICES");
        command
    };
    let listing = stdout(&succeeded(&mut hearth(&["plugins"])));
    let loaded = listing.split("; modules ").nth(1).and_then(|rest| rest.split(';').next());
    assert!(loaded.is_some_and(|modules| modules.contains("libggml-vulkan.so")), "{listing}");
    assert!(listing.contains("Vulkan0 = llvmpipe"), "{listing}");
    assert!(listing.contains("    software-gpu Vulkan0 ("), "{listing}");

    let question = ["run", "smollm2-135m", PARIS_QUESTION, "--temperature", "0"];
    let on = |device: &str| {
        let mut command = hearth(&question);
        command.args(["--max-tokens", "24", "--device", device]).env("HEARTH_LLAMACPP_LOG", "1");
        succeeded(&mut command)
    };
    let vulkan = on("Vulkan0");
    assert!(stdout(&vulkan).contains("Paris"), "{}", stdout(&vulkan));
    // llama.cpp's own log: the weights went to the Vulkan device.
    let log = String::from_utf8_lossy(&vulkan.stderr);
    assert!(log.contains("Vulkan0 model buffer size"), "{log}");
    // The device picked the greedy tokens (the plugin's `device_greedy`): llama.cpp logs
    // the sampler's attachment, a pointer, and no detachment ("(nil)").
    assert!(log.contains("set_sampler: seq_id = 0, sampler = 0x"), "{log}");
    assert!(!log.contains("sampler = (nil)"), "attached, then let go:\n{log}");
    // And `none` keeps them on the CPU, where a software renderer is not used anyway;
    // the CPU declines device greedy, as its logits are in host memory already.
    let cpu = on("none");
    assert!(stdout(&cpu).contains("Paris"), "{}", stdout(&cpu));
    let log = String::from_utf8_lossy(&cpu.stderr);
    assert!(!log.contains("Vulkan0 model buffer"), "{log}");
    assert!(log.contains("sampler = (nil)"), "{log}");

    let unknown = hearth(&["run", "smollm2-135m", "Hi", "--device", "CUDA7"]).output().unwrap();
    assert!(!unknown.status.success());
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        error.contains("no usable backend has a device `CUDA7` (devices: llamacpp: CPU, Vulkan0;"),
        "{error}"
    );
}

/// The free memory the llama.cpp plugin's probe reports for `device`.
fn free_bytes(host: &RealHost, device: &str) -> u64 {
    let listing: serde_json::Value =
        serde_json::from_slice(&succeeded(&mut host.command(&["plugins", "--json"])).stdout)
            .expect("`hearth plugins --json` prints JSON");
    let llamacpp = listing["plugins"].as_array().unwrap().iter().find(|p| p["id"] == "llamacpp");
    let devices = llamacpp.expect("the llama.cpp plugin is listed")["devices"].as_array().unwrap();
    let found = devices.iter().find(|d| d["name"] == device);
    found.unwrap_or_else(|| panic!("no {device} in {devices:?}"))["memory_free_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_model_larger_than_the_gpus_free_memory_gets_the_layers_that_fit_and_still_answers() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    // Leave all but 260 MiB of lavapipe free: after llama.cpp's compute buffer (205 MiB
    // there), SmolLM2's 31 layers (3 MiB each, and as much again of context) no longer
    // fit whole.
    let keep_free_mib = free_bytes(&host, "Vulkan0") / (1024 * 1024) - 260;
    let mut command = host.command(&[
        "run",
        "smollm2-135m",
        PARIS_QUESTION,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--device",
        "Vulkan0",
    ]);
    command
        .env("HEARTH_LLAMACPP_LOG", "1")
        .env("HEARTH_LLAMACPP_FIT_TARGET_MIB", keep_free_mib.to_string());
    let output = succeeded(&mut command);
    assert!(stdout(&output).contains("Paris"), "{}", stdout(&output));
    // llama.cpp's own log: "offloaded N/31 layers to GPU", with N short of all, at the
    // real load, after the fit's trial ones.
    let log = String::from_utf8_lossy(&output.stderr);
    let offloaded = log
        .rsplit("offloaded ")
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("llama.cpp logs how many layers it offloaded:\n{log}"));
    assert!((1..31).contains(&offloaded), "{offloaded} of 31 layers offloaded:\n{log}");
}

/// Weights that compute NaN are an error naming them on a GPU too, where the device picks
/// greedy tokens itself (see the Vulkan test above) and the host never sees the logits.
#[test]
fn damaged_weights_are_an_error_where_the_device_picks_the_greedy_tokens() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let mut bytes =
        std::fs::read(test_models_dir().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"))
            .unwrap();
    // As in the corrupt-file tests: quantized blocks whose scales read as NaN.
    bytes[60 << 20..61 << 20].fill(0xff);
    let scratch = tempfile::tempdir().unwrap();
    let damaged = scratch.path().join("damaged.gguf");
    std::fs::write(&damaged, &bytes).unwrap();
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]).with_extra_model(
        "damaged",
        &damaged,
        &["llamacpp"],
    );
    let question = ["run", "damaged", PARIS_QUESTION, "--temperature", "0", "--max-tokens", "24"];
    let mut command = host.command(&question);
    let broken = command.args(["--device", "Vulkan0"]).output().expect("run hearth");
    let log = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "answered from NaN: {}", stdout(&broken));
    assert!(log.contains("not finite"), "{log}");
}
