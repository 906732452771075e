#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_dag::fuzzing::bitswap(data));
