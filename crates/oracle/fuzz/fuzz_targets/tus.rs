#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_oracle::domain::upload::fuzz_tus(data));
