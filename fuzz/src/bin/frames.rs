//! AFL++ program: an agent's byte stream through the frame decoder and the
//! coordinator's message checks (see `distdiag_fuzz::frames`).
fn main() {
    afl::fuzz!(|data: &[u8]| distdiag_fuzz::frames(data));
}
