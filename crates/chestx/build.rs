//! Link arguments for libtorch go to `chestx-torch` only: `chestx` must start without loading
//! libtorch (see the crate's lib.rs), and the tests run the binaries without linking it themselves.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CHESTX_TORCH_LIB");
    for arg in torch_link_args() {
        println!("cargo:rustc-link-arg-bin=chestx-torch={arg}");
    }
}

include!("../chestx-model/torch_lib.rs");
