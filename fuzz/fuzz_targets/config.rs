//! Any string as the service configuration TOML: a `Config` or an error, never a panic. A
//! configuration that parses also serialises (redacted) and reads back to the same TOML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triage_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let _ = config.kafka.validate();
    if let Ok(dump) = config.redacted_toml() {
        let again: Config = toml::from_str(&dump).expect("the redacted dump reads back");
        let dump2 = again.redacted_toml().expect("serialises again");
        assert_eq!(dump, dump2);
    }
});
