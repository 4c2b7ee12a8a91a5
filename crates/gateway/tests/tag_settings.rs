//! The gateway builds its tag layer from `server.metadata_labels` and
//! `server.log_metadata_keys`; a label the tag layer refuses is a config error with the key's
//! path, never a panic, even for a `Config` changed in code after it was read.

use portcullis_gateway::Gateway;
use portcullis_gateway::config::Config;

fn config(labels: &str) -> Config {
    Config::parse(
        &format!(
            r#"{{"server": {{"metadata_labels": {labels}, "log_metadata_keys": ["team"]}},
                "providers": {{"m": {{"provider": "mock"}}}}}}"#
        ),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn eight_metadata_labels_build() {
    let config = config(r#"["a", "b", "c", "d", "e", "f", "g", "h"]"#);
    Gateway::new(config).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_ninth_metadata_label_is_a_config_error_at_its_path() {
    let mut config = config(r#"["a", "b", "c", "d", "e", "f", "g", "h"]"#);
    config.server.metadata_labels.push("i".to_owned());
    let err = Gateway::new(config).unwrap_err();
    assert_eq!(err.path(), "server.metadata_labels[8]");
    assert_eq!(err.message(), "at most 8 metadata keys can be labels");
}
