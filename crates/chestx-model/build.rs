//! Link libtorch_cuda even though nothing references it by name: without it the CUDA backend never
//! registers and `tch::Cuda::is_available()` is false on a GPU machine. Also embed an rpath to the
//! libtorch we built against, so binaries and tests run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CHESTX_TORCH_LIB");
    if let Some(lib) = torch_lib_dir() {
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-L{}", lib.display());
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}

fn torch_lib_dir() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("CHESTX_TORCH_LIB") {
        return Some(p.into());
    }
    if let Ok(p) = std::env::var("LIBTORCH") {
        return Some(std::path::Path::new(&p).join("lib"));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().into())
}
