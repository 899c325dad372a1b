//! Actions and dead letters as Kafka messages, and back.
//!
//! **Actions** (`scent.actions`): key = the batch (or the line for
//! line-scoped actions), value = the JSON of [`Action`] plus `schema`
//! (`scent.action/v2`) and `ts` (RFC 3339 rendering of `ts_ms`).
//!
//! **Dead letters** (`scent.readings.dlq`): key and value are the original
//! record's, byte for byte; headers say why and where from, mirroring Kafka
//! Connect's `__connect.errors.*`:
//!
//! | header | value |
//! |---|---|
//! | `__scent.errors.stream` | `readings` or `batches` |
//! | `__scent.errors.topic` / `.partition` / `.offset` | source coordinates |
//! | `__scent.errors.stage` | `decode`, `validate`, `late`, `duplicate` |
//! | `__scent.errors.reason.code` | stable code, e.g. `invalid_json` |
//! | `__scent.errors.reason` | human-readable detail |
//! | `__scent.errors.schema.version` | `1` |
//! | `__scent.errors.engine.version` | scent version |
//! | `__scent.errors.worker` | index of the worker that rejected it |
//!
//! All header values are UTF-8 strings.

use crate::error::KafkaError;
use scent_operators::model::{
    Action, DeadLetter, InputStream, RawRecord, RejectReason, Rejection, SourceCoord, Stage,
};
use scent_operators::wire::format_timestamp;
use serde::{Deserialize, Serialize};

/// The `schema` value of action messages. Version 2 added the changelog
/// (`revision`, `supersedes`, `withdrawn`, `sealed`), the agents' verdicts
/// and input spans in the evidence, maintenance orders, and a nullable
/// `evidence.batch_end_ms`.
pub const ACTION_SCHEMA: &str = "scent.action/v2";

/// The first version of the action schema, still decoded: its actions read
/// as revision 1, not sealed.
pub const ACTION_SCHEMA_V1: &str = "scent.action/v1";

/// Prefix of dead-letter headers.
pub const DLQ_HEADER_PREFIX: &str = "__scent.errors.";

/// The version of the dead-letter header set.
pub const DLQ_SCHEMA_VERSION: &str = "1";

#[derive(Serialize)]
struct ActionOut<'a> {
    schema: &'static str,
    #[serde(flatten)]
    action: &'a Action,
    ts: String,
}

#[derive(Deserialize)]
struct ActionIn {
    schema: String,
    #[serde(flatten)]
    action: Action,
}

/// Encodes an action as a message value.
pub fn encode_action(action: &Action) -> Vec<u8> {
    let message = ActionOut {
        schema: ACTION_SCHEMA,
        action,
        ts: format_timestamp(action.ts_ms),
    };
    serde_json::to_vec(&message).expect("actions always serialise")
}

/// Decodes an action message value.
pub fn decode_action(topic: &str, payload: &[u8]) -> Result<Action, KafkaError> {
    let malformed = |reason: String| KafkaError::Malformed {
        topic: topic.to_owned(),
        reason,
    };
    let message: ActionIn =
        serde_json::from_slice(payload).map_err(|error| malformed(error.to_string()))?;
    if message.schema != ACTION_SCHEMA && message.schema != ACTION_SCHEMA_V1 {
        return Err(malformed(format!("unknown schema {:?}", message.schema)));
    }
    Ok(message.action)
}

/// The headers of a dead letter, as `(name, value)` pairs.
pub fn dead_letter_headers(letter: &DeadLetter, worker: usize) -> Vec<(String, String)> {
    let source = &letter.record.source;
    let rejection = &letter.rejection;
    [
        ("stream", letter.record.stream.as_str().to_owned()),
        ("topic", source.topic.clone()),
        ("partition", source.partition.to_string()),
        ("offset", source.offset.to_string()),
        ("stage", rejection.stage.as_str().to_owned()),
        ("reason.code", rejection.reason.code().to_owned()),
        ("reason", rejection.detail.clone()),
        ("schema.version", DLQ_SCHEMA_VERSION.to_owned()),
        ("engine.version", env!("CARGO_PKG_VERSION").to_owned()),
        ("worker", worker.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{DLQ_HEADER_PREFIX}{name}"), value))
    .collect()
}

/// Rebuilds a dead letter from a DLQ message's key, value and headers.
pub fn decode_dead_letter(
    dlq_topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &[(String, Vec<u8>)],
) -> Result<DeadLetter, KafkaError> {
    let malformed = |reason: String| KafkaError::Malformed {
        topic: dlq_topic.to_owned(),
        reason,
    };
    let header = |name: &str| -> Result<String, KafkaError> {
        let full = format!("{DLQ_HEADER_PREFIX}{name}");
        let (_, value) = headers
            .iter()
            .find(|(key, _)| *key == full)
            .ok_or_else(|| malformed(format!("header `{full}` is missing")))?;
        String::from_utf8(value.clone())
            .map_err(|_| malformed(format!("header `{full}` is not UTF-8")))
    };
    let number = |name: &str| -> Result<i64, KafkaError> {
        header(name)?.parse().map_err(|_| {
            malformed(format!(
                "header `{DLQ_HEADER_PREFIX}{name}` is not a number"
            ))
        })
    };
    let stage_name = header("stage")?;
    let stage = Stage::parse(&stage_name)
        .ok_or_else(|| malformed(format!("unknown stage {stage_name:?}")))?;
    let code = header("reason.code")?;
    let reason = RejectReason::parse(&code)
        .ok_or_else(|| malformed(format!("unknown reason code {code:?}")))?;
    let topic = header("topic")?;
    let stream_name = header("stream")?;
    let stream = InputStream::parse(&stream_name)
        .ok_or_else(|| malformed(format!("unknown stream {stream_name:?}")))?;
    Ok(DeadLetter {
        record: RawRecord {
            stream,
            source: SourceCoord {
                topic,
                partition: number("partition")? as i32,
                offset: number("offset")?,
            },
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        },
        rejection: Rejection::new(stage, reason, header("reason")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scent_operators::model::{ActionKind, Decision, Evidence};

    #[test]
    fn actions_round_trip_and_carry_schema_and_time() {
        let action = Action {
            action_id: "00ff".into(),
            kind: ActionKind::BatchRelease,
            plant: "p1".into(),
            line: "L1".into(),
            batch: Some("B-1".into()),
            product: Some("espresso".into()),
            decision: Some(Decision::Release),
            reasons: vec![],
            evidence: Evidence::default(),
            ts_ms: 1_795_514_400_000,
            maintenance: None,
            revision: 2,
            supersedes: Some("00fe".into()),
            withdrawn: false,
            sealed: true,
        };
        let bytes = encode_action(&action);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["schema"], ACTION_SCHEMA);
        assert_eq!(json["ts"], "2026-11-24T10:00:00.000Z");
        assert_eq!(json["decision"], "release");
        assert_eq!(json["revision"], 2);
        assert_eq!(json["sealed"], true);
        assert_eq!(decode_action("t", &bytes).unwrap(), action);
    }

    #[test]
    fn dead_letters_round_trip_through_headers() {
        let letter = DeadLetter {
            record: RawRecord {
                stream: InputStream::Readings,
                source: SourceCoord {
                    topic: "scent.readings".into(),
                    partition: 3,
                    offset: 42,
                },
                key: Some(b"L1/t-1".to_vec()),
                payload: vec![0xff, 0x00, b'x'],
            },
            rejection: Rejection::new(Stage::Decode, RejectReason::InvalidUtf8, "bad byte"),
        };
        let headers: Vec<(String, Vec<u8>)> = dead_letter_headers(&letter, 1)
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        let back = decode_dead_letter(
            "scent.readings.dlq",
            letter.record.key.as_deref(),
            &letter.record.payload,
            &headers,
        )
        .unwrap();
        assert_eq!(back, letter);
    }
}
