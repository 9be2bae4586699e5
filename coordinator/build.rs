//! Every binary of this package (the coordinator, the CLI, the unit tests)
//! links the XGBoost C library from XGBOOST_LIB_DIR: record that directory
//! as the run path, and `../lib/distdiag` beside an installed binary.
fn main() {
    println!("cargo:rerun-if-env-changed=XGBOOST_LIB_DIR");
    match std::env::var("XGBOOST_LIB_DIR") {
        Ok(dir) if std::path::Path::new(&dir).join("libxgboost.so").exists() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}:$ORIGIN/../lib/distdiag");
        }
        _ => {
            println!("cargo:warning=no libxgboost.so in XGBOOST_LIB_DIR: run scripts/fetch-xgboost.sh (make does)");
        }
    }
}
