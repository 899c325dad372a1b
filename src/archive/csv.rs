//! CSV encoding of readings for `COPY archive_reading_staging FROM STDIN (FORMAT csv)`.
//!
//! The bulk path of [`Archive::commit`](super::Archive::commit) streams readings into a
//! per-connection temporary staging table with COPY (which has no conflict clause), then
//! moves them into `reading` with `INSERT ... SELECT ... ON CONFLICT DO NOTHING` inside the
//! same transaction. This module only turns readings into CSV bytes; it does no I/O.
//!
//! Encoding rules (PostgreSQL `COPY ... (FORMAT csv)` defaults: delimiter `,`, quote `"`,
//! NULL is an unquoted empty field):
//! - every text value is quoted, with `"` doubled, so commas, quotes, CR/LF and a lone `\.`
//!   line are all data; `None` is an unquoted empty field (NULL), `Some("")` is `""`;
//! - text must not contain NUL, which PostgreSQL text cannot store ([`ArchiveError::Data`]);
//! - `values` is a PostgreSQL array literal `{v1,v2,...}` (quoted, as it holds commas);
//!   finite floats use Rust's shortest round-trip representation, so `float8in` parses
//!   back the identical bits; NaN and infinities use PostgreSQL's spellings;
//! - event time is written as `YYYY-MM-DD HH:MM:SS.mmm+00`, exact to the millisecond; only
//!   years 1 to 9999 are accepted;
//! - `seq` must fit a `bigint`.
//!
//! Cost: one pass over each reading, roughly 10 to 20 bytes per channel.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Utc};
use scent_operators::model::{EventTimeMs, Reading, SourceCoord};

use super::ArchiveError;

/// Columns of the staging table, in CSV field order.
pub(crate) const STAGING_COLUMNS: &str = "plant, line, sensor, kind, ts, seq, batch, product, \
     \"values\", source_topic, source_partition, source_offset";

/// Appends one reading as a CSV line (with trailing `\n`) to `out`.
///
/// On error `out` is left with a partial line; callers discard the buffer.
pub(crate) fn push_reading(
    out: &mut String,
    reading: &Reading,
    source: &SourceCoord,
) -> Result<(), ArchiveError> {
    let context = || format!("reading at {source}");
    push_text(out, &reading.plant, "plant", context)?;
    out.push(',');
    push_text(out, &reading.line, "line", context)?;
    out.push(',');
    push_text(out, &reading.sensor, "sensor", context)?;
    out.push(',');
    out.push_str(reading.kind.as_str());
    out.push(',');
    push_timestamp(out, reading.ts_ms).map_err(|detail| ArchiveError::data(context(), detail))?;
    out.push(',');
    let seq = i64::try_from(reading.seq).map_err(|_| {
        ArchiveError::data(
            context(),
            format!("seq {} does not fit a bigint", reading.seq),
        )
    })?;
    write!(out, "{seq}").expect("writing to a String cannot fail");
    out.push(',');
    push_optional_text(out, reading.batch.as_deref(), "batch", context)?;
    out.push(',');
    push_optional_text(out, reading.product.as_deref(), "product", context)?;
    out.push_str(",\"{");
    for (i, value) in reading.values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_f64(out, *value);
    }
    out.push_str("}\",");
    push_text(out, &source.topic, "source topic", context)?;
    writeln!(out, ",{},{}", source.partition, source.offset)
        .expect("writing to a String cannot fail");
    Ok(())
}

/// A quoted CSV field.
fn push_text(
    out: &mut String,
    text: &str,
    field: &str,
    context: impl Fn() -> String,
) -> Result<(), ArchiveError> {
    if text.contains('\0') {
        return Err(ArchiveError::data(
            context(),
            format!("{field} contains a NUL character, which PostgreSQL text cannot store"),
        ));
    }
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest.find('"') {
        out.push_str(&rest[..=at]);
        out.push('"');
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
    Ok(())
}

/// A quoted field, or an unquoted empty field (NULL) for `None`.
fn push_optional_text(
    out: &mut String,
    text: Option<&str>,
    field: &str,
    context: impl Fn() -> String,
) -> Result<(), ArchiveError> {
    match text {
        Some(text) => push_text(out, text, field, context),
        None => Ok(()),
    }
}

/// A float as `float8in` reads it back bit for bit.
fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // `Debug` is the shortest representation that parses back to the same bits, in
        // exponent form for very large and very small magnitudes (`1e300`, `5e-324`).
        write!(out, "{value:?}").expect("writing to a String cannot fail");
    }
}

/// Event time as a PostgreSQL `timestamptz` literal in UTC.
fn push_timestamp(out: &mut String, ts_ms: EventTimeMs) -> Result<(), String> {
    let ts = utc_from_ms(ts_ms)?;
    write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S%.3f+00"))
        .expect("writing to a String cannot fail");
    Ok(())
}

/// Converts event time to a UTC instant that PostgreSQL stores exactly: years 1 to 9999.
pub(crate) fn utc_from_ms(ts_ms: EventTimeMs) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ts_ms)
        .filter(|ts| (1..=9999).contains(&ts.year()))
        .ok_or_else(|| format!("event time {ts_ms} ms is outside the years 1 to 9999"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use scent_operators::model::SensorKind;

    fn reading(values: Vec<f64>) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "line-1".into(),
            sensor: "enose-1".into(),
            kind: SensorKind::Enose,
            ts_ms: 1_700_000_000_123,
            seq: 7,
            batch: Some("B-1".into()),
            product: None,
            values,
        }
    }

    fn coord() -> SourceCoord {
        SourceCoord {
            topic: "scent.readings".into(),
            partition: 3,
            offset: 42,
        }
    }

    #[test]
    fn a_reading_becomes_one_quoted_csv_line() {
        let mut out = String::new();
        push_reading(&mut out, &reading(vec![1.0, -0.5, 1e300, 5e-324]), &coord()).unwrap();
        assert_eq!(
            out,
            "\"p1\",\"line-1\",\"enose-1\",enose,2023-11-14 22:13:20.123+00,7,\"B-1\",,\
             \"{1.0,-0.5,1e300,5e-324}\",\"scent.readings\",3,42\n"
        );
    }

    #[test]
    fn quotes_commas_and_newlines_stay_inside_one_field() {
        let mut out = String::new();
        let mut r = reading(vec![1.0]);
        r.plant = "a \"b\", c\nd\r\n\\.\ne".into();
        r.product = Some(String::new());
        push_reading(&mut out, &r, &coord()).unwrap();
        assert!(out.starts_with("\"a \"\"b\"\", c\nd\r\n\\.\ne\","));
        assert!(out.contains(",\"B-1\",\"\",\"{1.0}\","));
    }

    #[test]
    fn nul_seq_overflow_and_far_timestamps_are_data_errors() {
        let mut r = reading(vec![1.0]);
        r.sensor = "a\0b".into();
        let err = push_reading(&mut String::new(), &r, &coord()).unwrap_err();
        assert!(matches!(err, ArchiveError::Data { .. }), "{err}");
        assert!(!err.is_retryable());

        let mut r = reading(vec![1.0]);
        r.seq = u64::MAX;
        assert!(push_reading(&mut String::new(), &r, &coord()).is_err());

        let mut r = reading(vec![1.0]);
        r.ts_ms = i64::MAX;
        assert!(push_reading(&mut String::new(), &r, &coord()).is_err());
        r.ts_ms = -62_135_596_800_001; // one millisecond before 0001-01-01
        assert!(push_reading(&mut String::new(), &r, &coord()).is_err());
        r.ts_ms = -62_135_596_800_000;
        assert!(push_reading(&mut String::new(), &r, &coord()).is_ok());
    }

    #[test]
    fn non_finite_values_use_postgres_spellings() {
        let mut out = String::new();
        push_f64(&mut out, f64::NAN);
        out.push(' ');
        push_f64(&mut out, f64::INFINITY);
        out.push(' ');
        push_f64(&mut out, f64::NEG_INFINITY);
        assert_eq!(out, "NaN Infinity -Infinity");
    }

    proptest! {
        #[test]
        fn finite_floats_print_in_a_form_that_parses_back_bit_for_bit(bits in any::<u64>()) {
            let value = f64::from_bits(bits);
            prop_assume!(value.is_finite());
            let mut out = String::new();
            push_f64(&mut out, value);
            // PostgreSQL's float8in is strtod, correctly rounded like Rust's parser.
            let back: f64 = out.parse().unwrap();
            prop_assert_eq!(back.to_bits(), value.to_bits());
        }
    }
}
