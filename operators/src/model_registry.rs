//! Model records: trained models as they travel on `scent.models`.
//!
//! `scent train` fits models from archived history, stores every version
//! in PostgreSQL and publishes the current one to the compacted topic
//! `scent.models`, keyed by the model's name (`forecast/<product>`,
//! `contaminant/<name>`), so the topic always holds the latest version of
//! every model. A running engine
//! reads the topic as a third input: a record enters the dataflow at the
//! current event-time frontier (a model has no event time of its own) and
//! applies from that epoch on, so open batches are re-evaluated with it
//! and no restart is needed.
//!
//! The wire format (one JSON object per record):
//!
//! ```json
//! {"name": "forecast/espresso", "kind": "forecast", "product": "espresso",
//!  "version": "3f2a9c0d1e2b4a5c", "trained_at": "2026-11-25T04:00:00.000Z",
//!  "model": { ... }}
//! {"name": "contaminant/mould", "kind": "contaminant",
//!  "version": "9c1d2e3f4a5b6c7d", "trained_at": "2026-11-25T04:00:00.000Z",
//!  "signature": {"name": "mould", "response": [0.61, 0.04, ...]}}
//! ```
//!
//! [`decode_model_record`] checks everything a consumer relies on before
//! the record enters the dataflow: the envelope's fields, that the model
//! parses and is internally consistent ([`ForecastModel::check`],
//! [`ContaminantSignature::check`]), that the name matches the content,
//! and that `version` is the hash of the model (a record whose model was altered in
//! transit or by hand is rejected, not run). A rejected record becomes a
//! dead letter with the reason, like any other input.

use crate::fingerprint::ContaminantSignature;
use crate::forecast::ForecastModel;
use crate::model::{EventTimeMs, RejectReason, Rejection, Stage};
use crate::wire::{format_timestamp, parse_timestamp};
use serde::{Deserialize, Serialize};

/// Largest model record accepted, in bytes (forests of a few hundred
/// trees serialise to a few megabytes).
pub const MAX_MODEL_BYTES: usize = 64 * 1024 * 1024;

/// A trained model, as published.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's name and Kafka key, e.g. `forecast/espresso`.
    pub name: String,
    /// Content hash of the model.
    pub version: String,
    /// When it was trained.
    pub trained_ms: EventTimeMs,
    /// What the model is.
    pub content: ModelContent,
}

/// The kinds of published model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelContent {
    /// A forecast model of one product's line quality index.
    Forecast {
        /// The product.
        product: String,
        /// The `ForecastModel`, as JSON (parsed where it is used).
        model_json: String,
    },
    /// A contaminant signature learned from a confirmed contamination
    /// (`crate::contaminant_library`), shared by every line.
    Contaminant {
        /// The signature; its name is the record's name without
        /// `contaminant/`.
        signature: ContaminantSignature,
    },
}

impl ModelRecord {
    /// The record of a forecast model for `product`.
    pub fn forecast(product: &str, model: &ForecastModel, trained_ms: EventTimeMs) -> Self {
        ModelRecord {
            name: format!("forecast/{product}"),
            version: model.version(),
            trained_ms,
            content: ModelContent::Forecast {
                product: product.to_owned(),
                model_json: serde_json::to_string(model).expect("a model always serialises"),
            },
        }
    }

    /// The record of a learned contaminant signature.
    pub fn contaminant(signature: ContaminantSignature, trained_ms: EventTimeMs) -> Self {
        ModelRecord {
            name: format!("contaminant/{}", signature.name),
            version: signature.version(),
            trained_ms,
            content: ModelContent::Contaminant { signature },
        }
    }
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection::new(Stage::Decode, reason, detail)
}

fn invalid(detail: impl Into<String>) -> Rejection {
    Rejection::new(Stage::Validate, RejectReason::OutOfRange, detail)
}

/// Decodes and checks a model record (see the module docs).
pub fn decode_model_record(payload: &[u8]) -> Result<ModelRecord, Rejection> {
    if payload.len() > MAX_MODEL_BYTES {
        return Err(reject(
            RejectReason::Oversized,
            format!(
                "model record of {} bytes exceeds {MAX_MODEL_BYTES}",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|error| reject(RejectReason::InvalidUtf8, error.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| reject(RejectReason::InvalidJson, error.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| reject(RejectReason::WrongType, "a model record must be an object"))?;
    let field = |name: &str| {
        object.get(name).ok_or_else(|| {
            reject(
                RejectReason::MissingField,
                format!("missing field `{name}`"),
            )
        })
    };
    let text_field = |name: &str| {
        field(name)?.as_str().map(str::to_owned).ok_or_else(|| {
            reject(
                RejectReason::WrongType,
                format!("field `{name}` must be a string"),
            )
        })
    };
    let name = text_field("name")?;
    let version = text_field("version")?;
    let trained_ms = parse_timestamp(field("trained_at")?)?;
    match text_field("kind")?.as_str() {
        "forecast" => {
            let product = text_field("product")?;
            if name != format!("forecast/{product}") {
                return Err(invalid(format!(
                    "name {name:?} does not match the product {product:?} (expected \"forecast/{product}\")"
                )));
            }
            let model: ForecastModel = serde_json::from_value(field("model")?.clone())
                .map_err(|error| reject(RejectReason::WrongType, format!("model: {error}")))?;
            model
                .check()
                .map_err(|error| invalid(format!("model: {error}")))?;
            let actual = model.version();
            if actual != version {
                return Err(invalid(format!(
                    "version {version:?} is not the model's content hash {actual:?}"
                )));
            }
            Ok(ModelRecord {
                name,
                version,
                trained_ms,
                content: ModelContent::Forecast {
                    product,
                    model_json: serde_json::to_string(&model).expect("a model always serialises"),
                },
            })
        }
        "contaminant" => {
            let signature: ContaminantSignature =
                serde_json::from_value(field("signature")?.clone()).map_err(|error| {
                    reject(RejectReason::WrongType, format!("signature: {error}"))
                })?;
            signature
                .check()
                .map_err(|error| invalid(format!("signature: {error}")))?;
            if name != format!("contaminant/{}", signature.name) {
                return Err(invalid(format!(
                    "name {name:?} does not match the signature {:?} (expected \"contaminant/{}\")",
                    signature.name, signature.name
                )));
            }
            let actual = signature.version();
            if actual != version {
                return Err(invalid(format!(
                    "version {version:?} is not the signature's content hash {actual:?}"
                )));
            }
            Ok(ModelRecord {
                name,
                version,
                trained_ms,
                content: ModelContent::Contaminant { signature },
            })
        }
        other => Err(reject(
            RejectReason::WrongType,
            format!("unknown model kind {other:?} (known: \"forecast\", \"contaminant\")"),
        )),
    }
}

/// Encodes a model record in the wire format.
pub fn encode_model_record(record: &ModelRecord) -> Vec<u8> {
    let value = match &record.content {
        ModelContent::Forecast {
            product,
            model_json,
        } => {
            let model: serde_json::Value =
                serde_json::from_str(model_json).expect("model_json is the JSON of a model");
            serde_json::json!({
                "name": record.name,
                "kind": "forecast",
                "product": product,
                "version": record.version,
                "trained_at": format_timestamp(record.trained_ms),
                "model": model,
            })
        }
        ModelContent::Contaminant { signature } => serde_json::json!({
            "name": record.name,
            "kind": "contaminant",
            "version": record.version,
            "trained_at": format_timestamp(record.trained_ms),
            "signature": signature,
        }),
    };
    serde_json::to_vec(&value).expect("a model record always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mould() -> ContaminantSignature {
        ContaminantSignature {
            name: "mould".into(),
            response: vec![0.6, 0.05, 0.3, -0.1],
        }
    }

    #[test]
    fn a_contaminant_record_round_trips() {
        let record = ModelRecord::contaminant(mould(), 1_764_000_000_000);
        assert_eq!(record.name, "contaminant/mould");
        let decoded = decode_model_record(&encode_model_record(&record)).unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn an_altered_or_misnamed_contaminant_record_is_refused() {
        let record = ModelRecord::contaminant(mould(), 1_764_000_000_000);
        let mut value: serde_json::Value =
            serde_json::from_slice(&encode_model_record(&record)).unwrap();
        let mut altered = value.clone();
        altered["signature"]["response"][0] = serde_json::json!(0.7);
        let error = decode_model_record(&serde_json::to_vec(&altered).unwrap()).unwrap_err();
        assert!(error.detail.contains("content hash"), "{}", error.detail);
        let mut misnamed = value.clone();
        misnamed["name"] = serde_json::json!("contaminant/ethanol");
        let error = decode_model_record(&serde_json::to_vec(&misnamed).unwrap()).unwrap_err();
        assert!(error.detail.contains("does not match"), "{}", error.detail);
        value["signature"]["response"] = serde_json::json!([0.1, -1.5, 0.0, 0.0]);
        let error = decode_model_record(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(error.detail.contains("> -1"), "{}", error.detail);
    }
}
