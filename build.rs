//! Makes the binary start without LD_LIBRARY_PATH and keeps CUDA linked.
//!
//! torch-sys reports the libtorch it built against as `DEP_TCH_LIBTORCH_LIB`. Two link arguments
//! follow from it: a run path to that folder, and `libtorch_cuda` linked with `--no-as-needed`.
//! Nothing in Rust calls into `libtorch_cuda` directly, so without that flag the linker drops it
//! and `Device::cuda_if_available()` silently answers CPU on a GPU machine.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
