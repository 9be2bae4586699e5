//! Build script of every package whose binaries or tests link the XGBoost C
//! library (through `distdiag-diagnose`): record XGBOOST_LIB_DIR as their
//! run path, and `../lib/distdiag/xgboost/lib` beside an installed binary
//! (the wheel's layout, under which libxgboost.so finds its libgomp: the
//! Ansible role and the container image install it so). A link argument
//! from a build script reaches only its own package's targets, so each
//! such package names this file as its `build`.
fn main() {
    println!("cargo:rerun-if-env-changed=XGBOOST_LIB_DIR");
    match std::env::var("XGBOOST_LIB_DIR") {
        Ok(dir) if std::path::Path::new(&dir).join("libxgboost.so").exists() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}:$ORIGIN/../lib/distdiag/xgboost/lib");
        }
        _ => {
            println!("cargo:warning=no libxgboost.so in XGBOOST_LIB_DIR: run scripts/fetch-xgboost.sh (make does)");
        }
    }
}
