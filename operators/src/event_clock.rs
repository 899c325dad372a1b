//! Event time to timely progress: epochs, per-partition watermarks,
//! allowed lateness and idle partitions.
//!
//! Logical time in scent is an **epoch**: event time divided into
//! fixed-width buckets of [`EventClockConfig::epoch_ms`]. Each input
//! partition has a watermark, the largest event time it has delivered minus
//! the allowed lateness. The clock's **frontier** is the smallest watermark
//! epoch over the partitions that are not idle; the source holds its timely
//! capability at the frontier, so an epoch completes once every live
//! partition has moved past it by more than the lateness.
//!
//! A record is **late**, and goes to the dead-letter queue with reason
//! `late`, when its event time lies below its own partition's watermark
//! (a function of partition order alone, so replays agree) or when its
//! epoch is already below the frontier (possible only after an idle
//! partition wakes up, since idleness depends on wall time).
//!
//! A partition is **idle** when its reader is caught up and it has delivered
//! nothing for [`EventClockConfig::idle_timeout_ms`] of wall time; idle
//! partitions do not hold the frontier back. When every partition is idle,
//! the frontier moves past the newest event time delivered: whatever was
//! delivered is complete, and the last batches of a quiet plant still get
//! decided. Records sent at the frontier meanwhile (rejections, batch events
//! that came late) move it one more epoch, so a quiet plant's dead letters
//! are written too. An all-idle clock also follows the other workers'
//! frontier ([`EventClock::set_peer_frontier`]): a worker whose partitions
//! carry nothing must not hold the others back.
//!
//! Wall time enters only through the `now_ms` arguments, so the kernel is
//! deterministic under test. Cost: O(1) per record, O(partitions) per
//! frontier computation.

use crate::model::EventTimeMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Logical time of the dataflows: an event-time bucket number.
pub type Epoch = u64;

/// Identifies an input partition: (stream index, partition number).
pub type PartitionId = (u8, i32);

/// Parameters of the event clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventClockConfig {
    /// Width of an epoch in milliseconds of event time.
    pub epoch_ms: u64,
    /// How far behind its partition's newest record a record may arrive.
    pub allowed_lateness_ms: u64,
    /// Wall time after which a caught-up silent partition stops holding
    /// the frontier back.
    pub idle_timeout_ms: u64,
}

impl Default for EventClockConfig {
    fn default() -> Self {
        EventClockConfig {
            epoch_ms: 50,
            allowed_lateness_ms: 2_000,
            idle_timeout_ms: 5_000,
        }
    }
}

impl EventClockConfig {
    /// The epoch containing an event time (negative times map to epoch 0).
    pub fn epoch_of(&self, ts_ms: EventTimeMs) -> Epoch {
        ts_ms.max(0) as u64 / self.epoch_ms.max(1)
    }

    /// The first event time of an epoch.
    pub fn epoch_start_ms(&self, epoch: Epoch) -> EventTimeMs {
        (epoch.saturating_mul(self.epoch_ms)).min(i64::MAX as u64) as EventTimeMs
    }
}

/// Whether a record may enter the dataflow, and at which epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// On time: send at this epoch.
    OnTime(Epoch),
    /// Late: below its partition's watermark or below the frontier.
    Late {
        /// The epoch of the record.
        epoch: Epoch,
        /// The watermark (event time) it fell behind.
        watermark_ms: EventTimeMs,
    },
}

#[derive(Debug, Clone, Default)]
struct PartitionClock {
    max_event_ms: Option<EventTimeMs>,
    last_delivery_wall_ms: u64,
    caught_up: bool,
    /// A follower is admitted against the frontier but never holds it.
    follower: bool,
}

/// Per-worker event clock over the partitions the worker reads.
#[derive(Debug, Clone)]
pub struct EventClock {
    config: EventClockConfig,
    partitions: BTreeMap<PartitionId, PartitionClock>,
    frontier: Epoch,
    /// Something was sent at the frontier since it last moved.
    sent_at_frontier: bool,
    /// The furthest frontier of the other workers' clocks.
    peer_frontier: Epoch,
}

impl EventClock {
    /// A clock over `partitions`, all unseen, with the frontier at `start`.
    pub fn new(
        config: EventClockConfig,
        partitions: impl IntoIterator<Item = PartitionId>,
        start: Epoch,
        now_ms: u64,
    ) -> Self {
        let partitions = partitions
            .into_iter()
            .map(|id| {
                let clock = PartitionClock {
                    last_delivery_wall_ms: now_ms,
                    ..PartitionClock::default()
                };
                (id, clock)
            })
            .collect();
        EventClock {
            config,
            partitions,
            frontier: start,
            sent_at_frontier: false,
            peer_frontier: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EventClockConfig {
        &self.config
    }

    /// The current frontier: no record below this epoch will be admitted.
    pub fn frontier(&self) -> Epoch {
        self.frontier
    }

    fn watermark_ms(&self, clock: &PartitionClock) -> Option<EventTimeMs> {
        clock
            .max_event_ms
            .map(|max| max.saturating_sub(self.config.allowed_lateness_ms as i64))
    }

    /// Decides whether a record of `partition` with event time `ts_ms` is
    /// on time, and advances that partition's watermark.
    pub fn admit(&mut self, partition: PartitionId, ts_ms: EventTimeMs, now_ms: u64) -> Admission {
        let epoch = self.config.epoch_of(ts_ms);
        let frontier_ms = self.config.epoch_start_ms(self.frontier);
        let own_watermark = self
            .partitions
            .get(&partition)
            .and_then(|c| self.watermark_ms(c));
        let clock = self.partitions.entry(partition).or_default();
        clock.last_delivery_wall_ms = now_ms;
        clock.max_event_ms = Some(clock.max_event_ms.map_or(ts_ms, |max| max.max(ts_ms)));
        match own_watermark {
            Some(watermark_ms) if ts_ms < watermark_ms => Admission::Late {
                epoch,
                watermark_ms,
            },
            _ if epoch < self.frontier => Admission::Late {
                epoch,
                watermark_ms: frontier_ms,
            },
            _ => Admission::OnTime(epoch),
        }
    }

    /// Tells the clock how far the other workers' clocks have moved. When
    /// every partition of this clock is idle (or it has delivered nothing at
    /// all), the frontier follows them rather than holding them back.
    pub fn set_peer_frontier(&mut self, epoch: Epoch) {
        self.peer_frontier = epoch;
    }

    /// Records that something was sent at the current frontier (a
    /// rejection, a batch event that came late): when every partition is
    /// idle, the frontier then moves on so that it is written.
    pub fn note_sent_at_frontier(&mut self) {
        self.sent_at_frontier = true;
    }

    /// Makes `partition` a follower: its records are admitted against the
    /// frontier, but it never holds the frontier back. Sparse control
    /// streams (batch lifecycle events, one every few minutes) are
    /// followers, so decision latency does not wait for their next event
    /// or for their idle timeout. While a clock has other partitions, they
    /// alone move the frontier.
    pub fn follow(&mut self, partition: PartitionId) {
        self.partitions.entry(partition).or_default().follower = true;
    }

    /// Records whether the reader of `partition` has caught up with the
    /// newest record available, at wall time `now_ms`. Only caught-up
    /// partitions can go idle, and only after `idle_timeout_ms` of silence
    /// *while caught up*: a partition that was behind (or whose broker was
    /// unreachable) starts its idle timer afresh when it catches up.
    pub fn set_caught_up(&mut self, partition: PartitionId, caught_up: bool, now_ms: u64) {
        let clock = self.partitions.entry(partition).or_default();
        if caught_up && !clock.caught_up {
            clock.last_delivery_wall_ms = clock.last_delivery_wall_ms.max(now_ms);
        }
        clock.caught_up = caught_up;
    }

    /// Restarts every partition's idle timer at wall time `now_ms`. Called
    /// while the reader is paused (backpressure): a partition that is not
    /// being read must not look silent.
    pub fn hold_idleness(&mut self, now_ms: u64) {
        for clock in self.partitions.values_mut() {
            clock.last_delivery_wall_ms = now_ms;
        }
    }

    /// Whether `partition` is idle at wall time `now_ms`.
    pub fn is_idle(&self, partition: PartitionId, now_ms: u64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|clock| self.clock_is_idle(clock, now_ms))
    }

    fn clock_is_idle(&self, clock: &PartitionClock, now_ms: u64) -> bool {
        clock.caught_up
            && now_ms.saturating_sub(clock.last_delivery_wall_ms) >= self.config.idle_timeout_ms
    }

    /// Moves the frontier to `epoch` (never backwards) regardless of the
    /// partitions' watermarks: a restarted source replays the frontier
    /// moves its predecessor committed (see [`crate::source_progress`]).
    pub fn force_frontier(&mut self, epoch: Epoch) -> Epoch {
        self.frontier = self.frontier.max(epoch);
        self.frontier
    }

    /// Recomputes the frontier at wall time `now_ms` and returns it. The
    /// frontier never moves backwards.
    pub fn advance(&mut self, now_ms: u64) -> Epoch {
        let mut any_live = false;
        let mut live_unseen = false;
        let mut live_minimum: Option<EventTimeMs> = None;
        let mut all_maximum: Option<EventTimeMs> = None;
        let only_followers = self.partitions.values().all(|clock| clock.follower);
        for clock in self
            .partitions
            .values()
            .filter(|clock| only_followers || !clock.follower)
        {
            let watermark = self.watermark_ms(clock);
            if let Some(newest) = clock.max_event_ms {
                all_maximum = Some(all_maximum.map_or(newest, |max| max.max(newest)));
            }
            if self.clock_is_idle(clock, now_ms) {
                continue;
            }
            any_live = true;
            match watermark {
                // A live partition that has delivered nothing yet holds the
                // frontier where it is.
                None => live_unseen = true,
                Some(watermark) => {
                    live_minimum = Some(live_minimum.map_or(watermark, |min| min.min(watermark)))
                }
            }
        }
        let candidate = if !any_live {
            // Everything delivered is complete: move past the newest event
            // time, and past whatever was sent at the frontier.
            let past_newest = all_maximum.map(|max| self.config.epoch_of(max) + 1);
            let past_sent = self.sent_at_frontier.then_some(self.frontier + 1);
            let peers = (self.peer_frontier > 0).then_some(self.peer_frontier);
            past_newest.max(past_sent).max(peers)
        } else if live_unseen {
            None
        } else {
            live_minimum.map(|min| self.config.epoch_of(min))
        };
        if let Some(candidate) = candidate {
            if candidate > self.frontier {
                self.frontier = candidate;
                self.sent_at_frontier = false;
            }
        }
        self.frontier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: PartitionId = (0, 0);
    const P1: PartitionId = (0, 1);

    fn clock() -> EventClock {
        let config = EventClockConfig {
            epoch_ms: 1_000,
            allowed_lateness_ms: 2_000,
            idle_timeout_ms: 5_000,
        };
        EventClock::new(config, [P0, P1], 0, 0)
    }

    #[test]
    fn frontier_is_the_slowest_partition_minus_lateness() {
        let mut clock = clock();
        assert_eq!(clock.admit(P0, 10_500, 0), Admission::OnTime(10));
        assert_eq!(clock.advance(0), 0, "P1 has delivered nothing yet");
        assert_eq!(clock.admit(P1, 7_200, 0), Admission::OnTime(7));
        assert_eq!(clock.advance(0), 5);
        assert_eq!(clock.admit(P1, 20_000, 0), Admission::OnTime(20));
        assert_eq!(clock.advance(0), 8);
    }

    #[test]
    fn records_behind_their_partition_watermark_are_late() {
        let mut clock = clock();
        clock.admit(P0, 10_000, 0);
        assert_eq!(clock.admit(P0, 8_500, 0), Admission::OnTime(8));
        assert_eq!(
            clock.admit(P0, 7_999, 0),
            Admission::Late {
                epoch: 7,
                watermark_ms: 8_000
            }
        );
    }

    #[test]
    fn idle_partitions_release_the_frontier() {
        let mut clock = clock();
        clock.admit(P0, 30_000, 0);
        clock.admit(P1, 10_000, 0);
        clock.set_caught_up(P1, true, 0);
        assert_eq!(clock.advance(4_999), 8);
        assert_eq!(clock.advance(5_000), 28);
        // The idle partition wakes up behind the frontier: late.
        assert!(matches!(
            clock.admit(P1, 11_000, 6_000),
            Admission::Late { .. }
        ));
    }

    #[test]
    fn followers_never_hold_the_frontier() {
        let mut clock = clock();
        clock.follow(P1);
        clock.admit(P1, 5_000, 0);
        clock.admit(P0, 30_000, 0);
        assert_eq!(
            clock.advance(0),
            28,
            "the follower's 3 s watermark does not count"
        );
        // Its records behind the frontier are late, as any other.
        assert!(matches!(clock.admit(P1, 6_000, 0), Admission::Late { .. }));
        // A clock of followers alone still moves.
        let mut alone = EventClock::new(*clock.config(), [P1], 0, 0);
        alone.follow(P1);
        alone.admit(P1, 30_000, 0);
        assert_eq!(alone.advance(0), 28);
    }

    #[test]
    fn the_idle_timer_starts_when_a_partition_catches_up() {
        let mut clock = clock();
        clock.admit(P0, 30_000, 0);
        clock.admit(P1, 10_000, 0);
        // P1's broker was unreachable for 6 s: not caught up meanwhile.
        clock.set_caught_up(P1, false, 0);
        assert_eq!(clock.advance(6_000), 8);
        clock.set_caught_up(P1, true, 6_000);
        assert_eq!(clock.advance(6_001), 8, "silent, but caught up only now");
        assert_eq!(clock.advance(11_000), 28);
    }

    #[test]
    fn a_paused_reader_does_not_make_its_partitions_idle() {
        let mut clock = clock();
        clock.admit(P0, 30_000, 0);
        clock.admit(P1, 10_000, 0);
        clock.set_caught_up(P1, true, 0);
        clock.hold_idleness(4_000);
        assert_eq!(clock.advance(8_000), 8, "P1 paused 4 s ago, not 8");
        assert_eq!(clock.advance(9_000), 28);
    }

    #[test]
    fn all_idle_moves_past_everything_delivered_and_never_back() {
        let mut clock = clock();
        clock.admit(P0, 30_000, 0);
        clock.admit(P1, 10_000, 0);
        clock.set_caught_up(P0, true, 0);
        clock.set_caught_up(P1, true, 0);
        assert_eq!(clock.advance(10_000), 31);
        // A rejection sent at the frontier moves it once more.
        clock.note_sent_at_frontier();
        assert_eq!(clock.advance(10_000), 32);
        assert_eq!(clock.advance(10_000), 32);
        // P1 wakes up with a late record: it is live again, but its
        // watermark lies behind the frontier, which stays put.
        clock.set_caught_up(P1, false, 0);
        assert!(matches!(
            clock.admit(P1, 10_500, 10_000),
            Admission::Late { .. }
        ));
        assert_eq!(clock.advance(10_001), 32);
    }

    #[test]
    fn a_clock_that_never_saw_a_record_follows_its_peers_once_idle() {
        let mut clock = clock();
        clock.set_peer_frontier(40);
        assert_eq!(clock.advance(0), 0, "its partitions are not idle yet");
        clock.set_caught_up(P0, true, 0);
        clock.set_caught_up(P1, true, 0);
        assert_eq!(clock.advance(5_000), 40);
    }
}
