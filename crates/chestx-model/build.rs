//! Link libtorch_cuda even though nothing references it by name: without it the CUDA backend never
//! registers and `tch::Cuda::is_available()` is false on a GPU machine. Also embed an rpath to the
//! libtorch we built against, so binaries and tests run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CHESTX_TORCH_LIB");
    for arg in torch_link_args() {
        println!("cargo:rustc-link-arg={arg}");
    }
}

include!("torch_lib.rs");
