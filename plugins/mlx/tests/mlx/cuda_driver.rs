//! `scripts/cuda_driver.sh`, the test by which setup installs MLX's CUDA build and builds
//! the plugin against it, asked of stand-in driver libraries: a few lines of C exporting
//! the three driver calls it makes, compiled here with the system's `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A stand-in libcuda whose driver supports CUDA `version` (e.g. 13000 for 13.0) and
/// finds `gpus` GPUs.
fn stand_in_driver(dir: &Path, version: u32, gpus: u32) -> PathBuf {
    let source = dir.join(format!("cuda-{version}-{gpus}.c"));
    let library = dir.join(format!("libcuda-{version}-{gpus}.so"));
    std::fs::write(
        &source,
        format!(
            "int cuDriverGetVersion(int* v) {{ *v = {version}; return 0; }}\n\
             int cuInit(unsigned flags) {{ (void)flags; return 0; }}\n\
             int cuDeviceGetCount(int* n) {{ *n = {gpus}; return 0; }}\n"
        ),
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(status.success(), "cc failed on {}", source.display());
    library
}

/// The script's exit status, stdout and stderr, asking `library` for CUDA 13.
fn ask(library: &Path) -> (i32, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cuda_driver.sh");
    let output =
        Command::new("bash").arg(&script).arg("13").arg(library).output().expect("bash runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn cuda_13_is_usable_only_with_a_driver_that_supports_it_and_a_gpu() {
    let dir = std::env::temp_dir().join(format!("hearth-cuda-driver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (status, version, _) = ask(&stand_in_driver(&dir, 13000, 1));
    assert_eq!((status, version.as_str()), (0, "13.0"));

    let (status, _, why) = ask(&stand_in_driver(&dir, 12080, 1));
    assert_eq!(status, 2);
    assert!(why.contains("supporting CUDA 13") && why.contains("supports CUDA 12.8"), "{why}");

    let (status, _, why) = ask(&stand_in_driver(&dir, 13010, 0));
    assert_eq!(status, 2);
    assert!(why.contains("an NVIDIA GPU"), "{why}");

    let (status, _, why) = ask(&dir.join("libcuda-absent.so.1"));
    assert_eq!(status, 2);
    assert!(why.contains("no ") && why.contains("the loader finds"), "{why}");

    std::fs::remove_dir_all(&dir).unwrap();
}
