// Shared by the build scripts that link libtorch (included, not compiled on its own).

/// Where the libtorch we build against keeps its libraries.
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

/// Linker arguments: libtorch_cuda kept although unreferenced, and an rpath to libtorch.
fn torch_link_args() -> Vec<String> {
    let Some(lib) = torch_lib_dir() else {
        return Vec::new();
    };
    let mut args = Vec::new();
    if lib.join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed".to_string());
        args.push(format!("-L{}", lib.display()));
        args.push("-ltorch_cuda".to_string());
        args.push("-Wl,--as-needed".to_string());
    }
    args.push(format!("-Wl,-rpath,{}", lib.display()));
    args
}
