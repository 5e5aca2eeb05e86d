#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshsign::fuzzing::session_line(data));
