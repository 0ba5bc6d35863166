//! Logging: server logs on stderr, `info` unless `RUST_LOG` says otherwise; as readable
//! lines by default, or as one JSON object a line for log shippers.

use std::io::Write;

use log::kv::{Error, Key, Value, VisitSource};

/// How log records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `[time LEVEL] message`, for people.
    #[default]
    Text,
    /// `{"time":…,"level":…,"message":…, and each key-value of the record}`, one a line.
    Json,
}

/// Sets up `env_logger` once per process; later calls are ignored.
pub fn init() {
    init_with(LogFormat::Text);
}

/// Sets up `env_logger` in `format` once per process; later calls are ignored.
pub fn init_with(format: LogFormat) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    builder.format_target(false);
    match format {
        // The fields are in the message already; people need them once.
        LogFormat::Text => builder.format_key_values(|_, _| Ok(())),
        LogFormat::Json => builder.format(|out, record| {
            let mut line = String::with_capacity(160);
            line.push_str("{\"time\":");
            push_json_string(&mut line, &chrono::Utc::now().to_rfc3339());
            line.push_str(",\"level\":");
            push_json_string(&mut line, record.level().as_str());
            let mut fields = JsonFields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            line.push_str(",\"message\":");
            push_json_string(&mut line, &record.args().to_string());
            line.push('}');
            writeln!(out, "{line}")
        }),
    };
    let _ = builder.try_init();
}

/// Appends each key-value of a record as `,"key":value` (numbers and booleans bare).
struct JsonFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        self.0.push(',');
        push_json_string(self.0, key.as_str());
        self.0.push(':');
        if let Some(number) = value.to_u64() {
            self.0.push_str(&number.to_string());
        } else if let Some(number) = value.to_i64() {
            self.0.push_str(&number.to_string());
        } else if let Some(flag) = value.to_bool() {
            self.0.push_str(if flag { "true" } else { "false" });
        } else {
            push_json_string(self.0, &value.to_string());
        }
        Ok(())
    }
}

/// Appends `text` as a JSON string: quotes, backslashes and control characters escaped.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_they_must() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
