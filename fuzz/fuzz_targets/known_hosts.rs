#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshsign::fuzzing::known_hosts(data));
