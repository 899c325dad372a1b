//! Errors of the Kafka layer, classified by whether a retry can help.

use thiserror::Error;

/// An error talking to Kafka or interpreting what it returned.
#[derive(Debug, Error)]
pub enum KafkaError {
    /// The client could not be created from its configuration.
    #[error("invalid Kafka client configuration: {0}")]
    Config(String),
    /// The broker could not be reached or answered with an error.
    #[error("Kafka broker error during {operation}: {source}")]
    Broker {
        /// What was being done.
        operation: &'static str,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic scent needs does not exist.
    #[error("topic `{0}` does not exist; create it with `scent topics create`")]
    MissingTopic(String),
    /// A message could not be delivered.
    #[error("delivery to `{topic}` failed: {reason}")]
    Delivery {
        /// The destination topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// A message read back could not be decoded.
    #[error("malformed message on `{topic}`: {reason}")]
    Malformed {
        /// The topic it was read from.
        topic: String,
        /// What is wrong.
        reason: String,
    },
}

impl KafkaError {
    /// Wraps a client error with the operation that failed.
    pub fn broker(operation: &'static str, source: rdkafka::error::KafkaError) -> Self {
        KafkaError::Broker { operation, source }
    }

    /// Whether a newer producer with the same transactional id took over:
    /// another engine instance of the same group has started, and this one
    /// must stop rather than fence it back.
    pub fn is_fenced(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match self {
            KafkaError::Broker { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch)
            ),
            _ => false,
        }
    }

    /// Whether retrying the operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            KafkaError::Broker { .. } | KafkaError::Delivery { .. } => true,
            KafkaError::Config(_) | KafkaError::MissingTopic(_) | KafkaError::Malformed { .. } => {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError as ClientError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn only_a_newer_producer_taking_over_counts_as_fenced() {
        for code in [
            Code::Fenced,
            Code::ProducerFenced,
            Code::InvalidProducerEpoch,
        ] {
            let error =
                KafkaError::broker("commit transaction", ClientError::MessageProduction(code));
            assert!(error.is_fenced(), "{code:?}");
        }
        for code in [
            Code::QueueFull,
            Code::BrokerTransportFailure,
            Code::RequestTimedOut,
        ] {
            let error =
                KafkaError::broker("commit transaction", ClientError::MessageProduction(code));
            assert!(!error.is_fenced(), "{code:?}");
        }
        assert!(!KafkaError::Config("x".into()).is_fenced());
    }
}
