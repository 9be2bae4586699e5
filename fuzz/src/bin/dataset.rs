//! AFL++ program: the four files of an imported dataset through the importer
//! (see `distdiag_fuzz::dataset`).
fn main() {
    afl::fuzz!(|data: &[u8]| distdiag_fuzz::dataset(data));
}
