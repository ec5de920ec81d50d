//! Conversion to and from the agent link's protobuf `Resource`.
use orca_proto::cluster::v1::{self as pb, resource};

use crate::{Ranges, Resource, ResourceError, Resources, Scalar, Value, intern};

/// Resources from the wire; a negative, NaN or inverted value is refused with its name.
pub fn resources_from_proto(list: &[pb::Resource]) -> Result<Resources, ResourceError> {
    let mut out = Resources::new();
    for r in list {
        let value = match &r.value {
            Some(resource::Value::Scalar(v)) if v.is_finite() && *v >= 0.0 => {
                Value::Scalar(Scalar::from_f64(*v))
            }
            Some(resource::Value::Scalar(v)) => {
                return Err(ResourceError::Value {
                    name: r.name.clone(),
                    value: v.to_string(),
                    why: "a scalar must be a number >= 0",
                });
            }
            Some(resource::Value::Ranges(ranges)) => {
                if let Some(bad) = ranges.range.iter().find(|x| x.begin > x.end) {
                    return Err(ResourceError::Value {
                        name: r.name.clone(),
                        value: format!("[{}-{}]", bad.begin, bad.end),
                        why: "a range's begin must not exceed its end",
                    });
                }
                Value::Ranges(Ranges::new(ranges.range.iter().map(|x| (x.begin, x.end))))
            }
            None => {
                return Err(ResourceError::Value {
                    name: r.name.clone(),
                    value: String::new(),
                    why: "it has no value (a scalar or ranges)",
                });
            }
        };
        out.add_resource(Resource {
            name: intern(&r.name),
            value,
            reservation: (!r.reservation.is_empty() && r.reservation != "*")
                .then(|| intern(&r.reservation)),
        });
    }
    Ok(out)
}

/// Resources for the wire.
pub fn resources_to_proto(resources: &Resources) -> Vec<pb::Resource> {
    resources
        .iter()
        .map(|r| pb::Resource {
            name: r.name.to_string(),
            value: Some(match &r.value {
                Value::Scalar(s) => resource::Value::Scalar(s.as_f64()),
                Value::Ranges(ranges) => resource::Value::Ranges(pb::Ranges {
                    range: ranges
                        .iter()
                        .map(|(begin, end)| pb::Range { begin, end })
                        .collect(),
                }),
            }),
            reservation: r.reservation.as_deref().unwrap_or("").to_owned(),
        })
        .collect()
}
