//! Decodes JSON as Mesos's own v1 messages (the `.proto` files in `tests/mesos-v1`), the way
//! a strict protobuf JSON parser in a Mesos client library would: a field Mesos does not
//! define, a value of the wrong type or an unknown enum name is an error, and so is a field
//! Mesos marks `required` that is missing anywhere in the message.
use std::sync::OnceLock;

use prost_reflect::{
    Cardinality, DescriptorPool, DeserializeOptions, DynamicMessage, ReflectMessage as _, Value,
};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mesos-v1");
        protox::Compiler::new([root])
            .expect("the Mesos protos' folder")
            .include_imports(true)
            .open_files([
                "mesos/v1/master/master.proto",
                "mesos/v1/scheduler/scheduler.proto",
            ])
            .expect("Mesos's v1 protos compile")
            .descriptor_pool()
    })
}

/// `Ok(())` when `json` is a valid `message` (e.g. `mesos.v1.master.Response`) with every
/// required field; otherwise what is wrong, with the path to it.
pub fn check(message: &str, json: &serde_json::Value) -> Result<(), String> {
    let descriptor = pool()
        .get_message_by_name(message)
        .ok_or_else(|| format!("Mesos defines no message {message}"))?;
    let decoded = DynamicMessage::deserialize_with_options(
        descriptor,
        json.clone(),
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| format!("not a valid {message}: {e}"))?;
    let mut missing = Vec::new();
    missing_required(&decoded, message, &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("required fields missing: {}", missing.join(", ")))
    }
}

fn missing_required(message: &DynamicMessage, path: &str, out: &mut Vec<String>) {
    for field in message.descriptor().fields() {
        let at = format!("{path}.{}", field.name());
        if !message.has_field(&field) {
            if field.cardinality() == Cardinality::Required {
                out.push(at);
            }
            continue;
        }
        match &*message.get_field(&field) {
            Value::Message(inner) => missing_required(inner, &at, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(inner) = item {
                        missing_required(inner, &format!("{at}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}
