#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_piece::fuzzing::piece_cid(data));
