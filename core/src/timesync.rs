//! Clock discipline of one server's *system time*: local monotonic time plus an offset that
//! follows the primary time server.
//!
//! The OS clock is never touched. Samples are NTP-style four-timestamp exchanges with the
//! current source (the primary). A window of recent samples is filtered by round trip, and a
//! least-squares line through their offsets estimates both the offset and the frequency error
//! of this server's monotonic clock, so ±200 ppm drift does not leave the estimate behind as
//! samples age. The first sample of a run steps to the estimate; later errors are slewed at
//! most [`SLEW_PPB_MAX`], stepped forward past [`STEP_THRESHOLD_US`], or caught down at half
//! speed: system time handed out by [`SystemClock::now`] never goes backwards once synced.

use crate::instant::MonoUs;
use serde::{Deserialize, Serialize};

/// Samples kept in the window.
pub const WINDOW_SAMPLES_MAX: usize = 16;
/// Samples received longer ago than this leave the window.
pub const SAMPLE_AGE_US_MAX: u64 = 64_000_000;
/// The fastest rate at which the applied offset may change while slewing: 500 ppm.
pub const SLEW_PPB_MAX: u64 = 500_000;
/// The largest frequency correction taken from the samples: real clocks drift ±200 ppm each,
/// and keeping below [`SLEW_PPB_MAX`] leaves room to correct a phase error in both directions.
pub const FREQUENCY_PPB_MAX: i64 = 450_000;
/// Errors larger than this are stepped (we are behind) or caught down (we are ahead).
pub const STEP_THRESHOLD_US: u64 = 128_000;
/// An outlier is accepted as a real change of the source's time once this many consecutive
/// samples agree on it.
pub const CONFIRM_SAMPLES: usize = 4;
/// How fast the error bound grows with the age of the chosen sample: 500 ppm.
pub const ERROR_GROWTH_PPB: u64 = 500_000;

/// System time runs at this rate (half speed) while catching down.
const CATCH_DOWN_RATE_PPB: u64 = 500_000_000;
/// One: rates are system µs per monotonic µs, in parts per billion.
const PPB: u64 = 1_000_000_000;

/// System time, µs since the Unix epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct SystemUs(pub u64);

/// One NTP-style exchange with the time source: four timestamps.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TimeSample {
    /// When this server sent the request, on its monotonic clock.
    pub sent: MonoUs,
    /// When the source received the request, on its system clock.
    pub peer_received: SystemUs,
    /// When the source sent the reply, on its system clock.
    pub peer_sent: SystemUs,
    /// When this server received the reply (the driver's receive stamp), on its monotonic clock.
    pub received: MonoUs,
    /// The source's own error bound against its primary (0 for a primary on its own clock).
    pub peer_error_us: u64,
}

impl TimeSample {
    /// The source's system time minus this server's monotonic time at the exchange's midpoint:
    /// `((peer_received − sent) + (peer_sent − received)) / 2`, saturating.
    pub fn offset_us(&self) -> i64 {
        let out_us = i128::from(self.peer_received.0) - i128::from(self.sent.0);
        let back_us = i128::from(self.peer_sent.0) - i128::from(self.received.0);
        saturate_i64((out_us + back_us) / 2)
    }

    /// Network time of the exchange, without the source's processing time:
    /// `(received − sent) − (peer_sent − peer_received)`, saturating at 0.
    pub fn round_trip_us(&self) -> u64 {
        self.exchange_us().saturating_sub(self.processing_us())
    }

    fn exchange_us(&self) -> u64 {
        self.received.0.saturating_sub(self.sent.0)
    }

    fn processing_us(&self) -> u64 {
        self.peer_sent.0.saturating_sub(self.peer_received.0)
    }

    /// The monotonic time the offset belongs to.
    fn midpoint(&self) -> MonoUs {
        MonoUs(self.sent.0.saturating_add(self.exchange_us() / 2))
    }

    /// A real exchange has its reply after its request on both clocks, and the source did not
    /// hold the request longer than the whole exchange took.
    fn is_plausible(&self) -> bool {
        self.received >= self.sent
            && self.peer_sent >= self.peer_received
            && self.processing_us() <= self.exchange_us()
    }

    /// The sample's offset carried to `mono` at frequency `freq_ppb`.
    fn offset_at_us(&self, mono: MonoUs, freq_ppb: i64) -> i64 {
        let elapsed_us = i128::from(mono.0) - i128::from(self.midpoint().0);
        saturate_i64(
            i128::from(self.offset_us()) + elapsed_us * i128::from(freq_ppb) / i128::from(PPB),
        )
    }
}

/// What [`SystemClock::add_sample`] did, for logs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Correction {
    /// The sample was ignored (implausible, an unconfirmed outlier, or this server is its own
    /// source).
    None,
    /// The error is being slewed at most [`SLEW_PPB_MAX`].
    Slew,
    /// System time jumped by `by_us`: forward, or either way on the first sample of a run.
    Step {
        /// Size of the jump, µs; negative only on the first sample of a run.
        by_us: i64,
    },
    /// This server is ahead by `by_us`: system time runs at half speed until caught up.
    CatchDown {
        /// How far ahead this server was, µs.
        by_us: u64,
    },
}

/// The applied system time as a function of monotonic time since the last correction: a
/// correction segment at `correction_rate_ppb` for `correction_us`, then `rate_ppb`. Both rates
/// are positive and each term is floored separately, so the function never decreases.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Trajectory {
    anchor_mono: MonoUs,
    anchor_system: SystemUs,
    correction_rate_ppb: u64,
    correction_us: u64,
    rate_ppb: u64,
}

impl Trajectory {
    fn at(&self, mono: MonoUs) -> SystemUs {
        let elapsed_us = mono.0.saturating_sub(self.anchor_mono.0);
        let correcting_us = elapsed_us.min(self.correction_us);
        let after_us = elapsed_us - correcting_us;
        let advance_us =
            scale(correcting_us, self.correction_rate_ppb) + scale(after_us, self.rate_ppb);
        SystemUs(saturate_u64(u128::from(self.anchor_system.0) + advance_us))
    }

    /// Offset change still to come from the correction at `mono`, µs (negative when catching
    /// down or slewing back).
    fn pending_signed_us(&self, mono: MonoUs) -> i64 {
        let pending_us = i128::from(self.pending_us(mono));
        saturate_i64(if self.correction_rate_ppb < self.rate_ppb {
            -pending_us
        } else {
            pending_us
        })
    }

    /// Part of the correction not yet applied at `mono`, µs.
    fn pending_us(&self, mono: MonoUs) -> u64 {
        let elapsed_us = mono.0.saturating_sub(self.anchor_mono.0);
        let left_us = self.correction_us.saturating_sub(elapsed_us);
        saturate_u64(scale(left_us, self.correction_rate_ppb.abs_diff(self.rate_ppb)))
    }
}

/// The system time of one server: monotonic time plus an offset disciplined by samples from
/// the primary time server.
#[derive(Clone, Debug)]
pub struct SystemClock {
    trajectory: Trajectory,
    /// Estimated change of the offset per monotonic µs against the source, ppb.
    freq_ppb: i64,
    /// Accepted samples from the current source, oldest first.
    window: Vec<TimeSample>,
    /// The last [`CONFIRM_SAMPLES`] plausible samples, accepted or not: they confirm a change.
    recent: Vec<TimeSample>,
    own_source: bool,
    synced: bool,
    /// The newest monotonic time seen in any call.
    latest_mono: MonoUs,
    /// No later reading may be below this: the newest time handed out since time became
    /// authoritative (the first sample of the run may step provisional time back).
    floor: SystemUs,
    /// Error bound of the chosen sample (round trip / 2 + the source's own bound) ...
    bound_base_us: u64,
    /// ... growing at [`ERROR_GROWTH_PPB`] from this monotonic time.
    bound_since: MonoUs,
}

impl SystemClock {
    /// A provisional clock reading `initial` (the wall clock, or persisted time) at `now`; not
    /// synced until the first sample or until it becomes its own source.
    pub fn new(now: MonoUs, initial: SystemUs) -> Self {
        let clock = SystemClock {
            trajectory: Trajectory {
                anchor_mono: now,
                anchor_system: initial,
                correction_rate_ppb: PPB,
                correction_us: 0,
                rate_ppb: PPB,
            },
            freq_ppb: 0,
            window: Vec::with_capacity(WINDOW_SAMPLES_MAX),
            recent: Vec::with_capacity(CONFIRM_SAMPLES),
            own_source: false,
            synced: false,
            latest_mono: now,
            floor: SystemUs(0),
            bound_base_us: u64::MAX,
            bound_since: now,
        };
        clock.check_invariants();
        clock
    }

    /// System time at `mono`; never less than any earlier reading of this run (a `mono` older
    /// than one already seen reads as the newest). Applies the slew progressively.
    pub fn now(&mut self, mono: MonoUs) -> SystemUs {
        let system = self.peek(mono);
        assert!(system >= self.floor, "system time went backwards: {system:?} < {:?}", self.floor);
        self.latest_mono = self.latest_mono.max(mono);
        self.floor = system;
        system
    }

    /// What [`SystemClock::now`] would return, without recording it.
    pub fn peek(&self, mono: MonoUs) -> SystemUs {
        self.trajectory.at(mono.max(self.latest_mono))
    }

    /// Takes a sample from the current source, received by `now`, and corrects system time
    /// towards the new estimate.
    pub fn add_sample(&mut self, sample: TimeSample, now: MonoUs) -> Correction {
        self.latest_mono = self.latest_mono.max(now);
        let now = self.latest_mono;
        // A late reply from a former source, or a nonsense exchange, says nothing.
        if self.own_source || !sample.is_plausible() || sample.received > now {
            return Correction::None;
        }
        let is_fresh = |s: &TimeSample| now.0.saturating_sub(s.received.0) <= SAMPLE_AGE_US_MAX;
        self.window.retain(is_fresh);
        self.recent.retain(is_fresh);
        if self.recent.len() == CONFIRM_SAMPLES {
            self.recent.remove(0);
        }
        self.recent.push(sample);

        if self.is_outlier(&sample, now) {
            if !self.recent_confirm(&sample) {
                return Correction::None;
            }
            // The source's time really changed: the old window describes a time that is gone.
            self.window.clone_from(&self.recent);
        } else {
            if self.window.len() == WINDOW_SAMPLES_MAX {
                self.window.remove(0);
            }
            self.window.push(sample);
        }

        let Some((estimate_us, freq_ppb)) = self.estimate(now) else {
            return Correction::None;
        };
        self.freq_ppb = freq_ppb;
        self.note_chosen_sample(now);
        let correction = self.correct_towards(estimate_us, now);
        self.check_invariants();
        correction
    }

    /// The primary changed: forget the old source's samples but keep the applied offset, so
    /// time does not jump. `source_changed_to_self` makes this server's own clock the reference.
    pub fn set_source(&mut self, source_changed_to_self: bool) {
        let now = self.latest_mono;
        self.window.clear();
        self.recent.clear();
        if source_changed_to_self {
            // Our own time is the reference now: nothing left to correct towards. The
            // frequency is kept so followers see no change of rate.
            let system = self.trajectory.at(now);
            self.reanchor(now, system, PPB, 0);
            self.synced = true;
            self.bound_base_us = 0;
            self.bound_since = now;
        } else if self.own_source {
            // Our time was the reference until now; it drifts from the new source from here.
            self.bound_base_us = 0;
            self.bound_since = now;
        }
        // Changing to another remote source keeps the trajectory, a correction in progress
        // included: the new source was following the old one, so that is still the way to go.
        self.own_source = source_changed_to_self;
        self.check_invariants();
    }

    /// A bound on |system − primary| at `mono`: the chosen sample's round trip / 2 plus the
    /// source's own bound plus [`ERROR_GROWTH_PPB`] × its age, plus any correction not yet
    /// applied; 0 for a primary on its own clock, `u64::MAX` before the first sample.
    pub fn error_bound_us(&self, mono: MonoUs) -> u64 {
        if self.own_source {
            return 0;
        }
        let mono = mono.max(self.latest_mono);
        let age_us = mono.0.saturating_sub(self.bound_since.0);
        let growth_us = saturate_u64(scale(age_us, ERROR_GROWTH_PPB));
        self.bound_base_us
            .saturating_add(growth_us)
            .saturating_add(self.trajectory.pending_us(mono))
    }

    /// The applied offset at `mono`: system − monotonic, µs.
    pub fn offset_us(&self, mono: MonoUs) -> i64 {
        let mono = mono.max(self.latest_mono);
        saturate_i64(i128::from(self.trajectory.at(mono).0) - i128::from(mono.0))
    }

    /// Whether system time is authoritative: a sample from a source other than this server has
    /// been taken, or this server is its own source.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Asserts the clock's invariants; cheap enough to run after every event.
    pub fn check_invariants(&self) {
        assert!(self.window.len() <= WINDOW_SAMPLES_MAX, "window over its limit");
        assert!(self.recent.len() <= CONFIRM_SAMPLES, "confirmation samples over their limit");
        assert!(
            self.freq_ppb.abs() <= FREQUENCY_PPB_MAX,
            "frequency {} ppb out of range",
            self.freq_ppb
        );
        let t = &self.trajectory;
        assert_eq!(
            t.rate_ppb,
            rate_ppb(self.freq_ppb),
            "free-running rate is not the frequency estimate"
        );
        let slewing = t.correction_rate_ppb.abs_diff(PPB) <= SLEW_PPB_MAX;
        assert!(
            t.correction_us == 0 || slewing || t.correction_rate_ppb == CATCH_DOWN_RATE_PPB,
            "correction rate {} ppb is neither a slew nor a catch-down",
            t.correction_rate_ppb
        );
        assert!(t.anchor_mono <= self.latest_mono, "trajectory anchored in the future");
        assert!(self.peek(self.latest_mono) >= self.floor, "system time below an earlier reading");
        assert!(!self.own_source || self.synced, "an own source is synced");
        assert!(!self.own_source || self.window.is_empty(), "an own source takes no samples");
    }

    /// Whether `sample` disagrees with what the clock believes by more than the window's
    /// measurement noise allows. With no window, where synced time is heading (the offset
    /// plus the correction in progress) is the reference; before the first sample anything goes.
    fn is_outlier(&self, sample: &TimeSample, now: MonoUs) -> bool {
        let reference_us = match self.estimate(now) {
            Some((estimate_us, _)) => estimate_us,
            None if self.synced => saturate_i64(
                i128::from(self.offset_us(now))
                    + i128::from(self.trajectory.pending_signed_us(now)),
            ),
            None => return false,
        };
        let min_rtt_us = min_round_trip_us(&self.window).unwrap_or(sample.round_trip_us());
        let distance_us = sample.offset_at_us(now, self.freq_ppb).abs_diff(reference_us);
        distance_us > outlier_tolerance_us(min_rtt_us)
    }

    /// Whether the last [`CONFIRM_SAMPLES`] samples all agree with `sample`.
    fn recent_confirm(&self, sample: &TimeSample) -> bool {
        let Some(min_rtt_us) = min_round_trip_us(&self.recent) else {
            return false;
        };
        let tolerance_us = outlier_tolerance_us(min_rtt_us);
        self.recent.len() == CONFIRM_SAMPLES
            && self.recent.iter().all(|s| {
                s.offset_at_us(sample.midpoint(), self.freq_ppb).abs_diff(sample.offset_us())
                    <= tolerance_us
            })
    }

    /// The offset estimated at `now` and the frequency: a least-squares line through the
    /// low-round-trip samples, or the best sample carried forward at the known frequency when
    /// fewer than three qualify.
    fn estimate(&self, now: MonoUs) -> Option<(i64, i64)> {
        let min_rtt_us = min_round_trip_us(&self.window)?;
        let limit_us = min_rtt_us.saturating_add(min_rtt_us / 2).saturating_add(100);
        let filtered: Vec<&TimeSample> =
            self.window.iter().filter(|s| s.round_trip_us() <= limit_us).collect();
        if filtered.len() >= 3 {
            if let Some(fit) = least_squares(&filtered, now) {
                return Some(fit);
            }
        }
        let best = self.window.iter().min_by_key(|s| s.round_trip_us())?;
        Some((best.offset_at_us(now, self.freq_ppb), self.freq_ppb))
    }

    /// Bases the error bound on the sample that bounds it tightest at `now`: its round trip
    /// / 2 plus the source's bound plus [`ERROR_GROWTH_PPB`] × its age (NTP's dispersion).
    fn note_chosen_sample(&mut self, now: MonoUs) {
        let bound_us = |s: &TimeSample| {
            let age_us = now.0.saturating_sub(s.midpoint().0);
            sample_bound_us(s).saturating_add(saturate_u64(scale(age_us, ERROR_GROWTH_PPB)))
        };
        if let Some(chosen) = self.window.iter().min_by_key(|s| bound_us(s)) {
            self.bound_base_us = sample_bound_us(chosen);
            self.bound_since = chosen.midpoint();
        }
    }

    /// Moves the trajectory towards offset `estimate_us` at `now` by the rules of the module.
    fn correct_towards(&mut self, estimate_us: i64, now: MonoUs) -> Correction {
        let current = self.trajectory.at(now);
        let target = SystemUs(saturate_u64_i(i128::from(now.0) + i128::from(estimate_us)));
        let error_us = saturate_i64(i128::from(target.0) - i128::from(current.0));
        if !self.synced {
            // Time before the first sample was provisional: step either way, and the floor
            // of "never backwards" starts here.
            self.synced = true;
            self.reanchor(now, target, PPB, 0);
            self.floor = target;
            return Correction::Step { by_us: error_us };
        }
        let magnitude_us = error_us.unsigned_abs();
        if error_us > 0 && magnitude_us > STEP_THRESHOLD_US {
            self.reanchor(now, target, PPB, 0);
            return Correction::Step { by_us: error_us };
        }
        // A catch-down in progress runs until caught up rather than handing the last 128 ms
        // to the slew, which would take minutes at 500 ppm.
        let catching_down = self.trajectory.correction_rate_ppb == CATCH_DOWN_RATE_PPB
            && self.trajectory.pending_us(now) > 0;
        if error_us < 0 && (magnitude_us > STEP_THRESHOLD_US || catching_down) {
            // Closing speed: the target runs at 1 + freq, we run at one half.
            let closing_ppb = rate_ppb(self.freq_ppb) - CATCH_DOWN_RATE_PPB;
            self.reanchor(
                now,
                current,
                CATCH_DOWN_RATE_PPB,
                duration_us(magnitude_us, closing_ppb),
            );
            return Correction::CatchDown { by_us: magnitude_us };
        }
        // Slew at the full rate in the needed direction: the offset changes by exactly
        // SLEW_PPB_MAX while correcting, then by the frequency estimate.
        let (correction_rate_ppb, closing_ppb) = if error_us >= 0 {
            (PPB + SLEW_PPB_MAX, SLEW_PPB_MAX.saturating_add_signed(-self.freq_ppb))
        } else {
            (PPB - SLEW_PPB_MAX, SLEW_PPB_MAX.saturating_add_signed(self.freq_ppb))
        };
        self.reanchor(now, current, correction_rate_ppb, duration_us(magnitude_us, closing_ppb));
        Correction::Slew
    }

    fn reanchor(
        &mut self,
        now: MonoUs,
        system: SystemUs,
        correction_rate_ppb: u64,
        correction_us: u64,
    ) {
        self.trajectory = Trajectory {
            anchor_mono: now,
            anchor_system: system,
            correction_rate_ppb,
            correction_us,
            rate_ppb: rate_ppb(self.freq_ppb),
        };
    }
}

/// Offset samples further than this from the estimate are outliers: eight round trips of
/// noise plus 1 ms.
fn outlier_tolerance_us(min_rtt_us: u64) -> u64 {
    min_rtt_us.saturating_mul(8).saturating_add(1_000)
}

/// A sample's error bound when it was taken: half its round trip plus the source's bound.
fn sample_bound_us(sample: &TimeSample) -> u64 {
    (sample.round_trip_us() / 2).saturating_add(sample.peer_error_us)
}

fn min_round_trip_us(samples: &[TimeSample]) -> Option<u64> {
    samples.iter().map(TimeSample::round_trip_us).min()
}

/// Least-squares line of offset against midpoint time: (offset at `now`, slope in ppb clamped
/// to [`FREQUENCY_PPB_MAX`]); `None` when the samples share one midpoint or overflow.
fn least_squares(samples: &[&TimeSample], now: MonoUs) -> Option<(i64, i64)> {
    let first = samples.first()?;
    // Relative to the first sample, so f64 keeps µs precision at epoch-sized values.
    let x0 = i128::from(first.midpoint().0);
    let y0 = i128::from(first.offset_us());
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            ((i128::from(s.midpoint().0) - x0) as f64, (i128::from(s.offset_us()) - y0) as f64)
        })
        .collect();
    let n = points.len() as f64;
    let x_mean = points.iter().map(|p| p.0).sum::<f64>() / n;
    let y_mean = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - x_mean) * (p.0 - x_mean)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - x_mean) * (p.1 - y_mean)).sum();
    let slope = sxy / sxx;
    if !(sxx > 0.0 && slope.is_finite() && y_mean.is_finite()) {
        return None;
    }
    let limit = FREQUENCY_PPB_MAX as f64;
    let freq_ppb = (slope * PPB as f64).round().clamp(-limit, limit) as i64;
    let now_x = (i128::from(now.0) - x0) as f64;
    let y_now = y_mean + (now_x - x_mean) * freq_ppb as f64 / PPB as f64;
    // `as` saturates (and maps NaN to 0), so absurd samples cannot panic here.
    Some((saturate_i64(y0.saturating_add(y_now.round() as i128)), freq_ppb))
}

/// System µs per monotonic µs, ppb, of a clock whose offset changes at `freq_ppb`.
fn rate_ppb(freq_ppb: i64) -> u64 {
    PPB.saturating_add_signed(freq_ppb)
}

/// How long closing `error_us` at `closing_ppb` takes, µs.
fn duration_us(error_us: u64, closing_ppb: u64) -> u64 {
    if closing_ppb == 0 {
        return 0;
    }
    saturate_u64(u128::from(error_us) * u128::from(PPB) / u128::from(closing_ppb))
}

/// `elapsed_us` at `rate_ppb`, floored.
fn scale(elapsed_us: u64, rate_ppb: u64) -> u128 {
    u128::from(elapsed_us) * u128::from(rate_ppb) / u128::from(PPB)
}

fn saturate_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

fn saturate_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn saturate_u64_i(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::ops::RangeInclusive;

    const SECOND_US: u64 = 1_000_000;

    /// One-way network delays of the simulated link, µs, drawn uniformly per message.
    #[derive(Clone)]
    struct Profile {
        out_us: RangeInclusive<u64>,
        back_us: RangeInclusive<u64>,
    }

    impl Profile {
        /// Half the largest possible difference between the two directions: the error the
        /// samples cannot see.
        fn half_asymmetry_us(&self) -> u64 {
            let out = self.back_us.end().abs_diff(*self.out_us.start());
            let back = self.out_us.end().abs_diff(*self.back_us.start());
            out.max(back) / 2
        }
    }

    fn lan() -> Profile {
        Profile { out_us: 100..=300, back_us: 100..=300 }
    }

    /// A tiny world: true time `t_us`; this server's monotonic clock and the primary's system
    /// clock both drift against it.
    struct World {
        rng: ChaCha8Rng,
        t_us: u64,
        mono_base_us: u64,
        mono_drift_ppb: i64,
        primary_base_us: u64,
        primary_drift_ppb: i64,
        /// A real change of the primary's time, µs.
        primary_jump_us: i64,
    }

    impl World {
        fn new(seed: u64) -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            World {
                mono_base_us: rng.gen_range(1..=1_000_000) * SECOND_US,
                mono_drift_ppb: rng.gen_range(-200_000..=200_000),
                primary_base_us: 1_700_000_000 * SECOND_US + rng.gen_range(0..=SECOND_US),
                primary_drift_ppb: rng.gen_range(-200_000..=200_000),
                primary_jump_us: 0,
                t_us: 0,
                rng,
            }
        }

        fn mono_at(&self, t_us: u64) -> MonoUs {
            MonoUs(drifted(self.mono_base_us, t_us, self.mono_drift_ppb))
        }

        fn primary_at(&self, t_us: u64) -> SystemUs {
            let system = drifted(self.primary_base_us, t_us, self.primary_drift_ppb);
            SystemUs(system.saturating_add_signed(self.primary_jump_us))
        }

        fn mono(&self) -> MonoUs {
            self.mono_at(self.t_us)
        }

        /// A clock started at the local wall clock, `skew_us` off the primary.
        fn clock(&self, skew_us: i64) -> SystemClock {
            SystemClock::new(
                self.mono(),
                SystemUs(self.primary_at(self.t_us).0.saturating_add_signed(skew_us)),
            )
        }

        /// One exchange starting now; true time advances to its end.
        fn exchange(&mut self, profile: &Profile) -> TimeSample {
            let out_us = self.rng.gen_range(profile.out_us.clone());
            let back_us = self.rng.gen_range(profile.back_us.clone());
            let processing_us = 20;
            let sent = self.mono();
            let peer_received = self.primary_at(self.t_us + out_us);
            let peer_sent = self.primary_at(self.t_us + out_us + processing_us);
            self.t_us += out_us + processing_us + back_us;
            TimeSample { sent, peer_received, peer_sent, received: self.mono(), peer_error_us: 0 }
        }

        /// System time minus the primary's, now.
        fn error_us(&self, clock: &mut SystemClock) -> i64 {
            clock.now(self.mono()).0 as i64 - self.primary_at(self.t_us).0 as i64
        }

        /// One second: a sample at its start, readings every 250 ms; returns the correction
        /// and the readings' errors. Asserts the readings never decrease.
        fn second(&mut self, clock: &mut SystemClock, profile: &Profile) -> (Correction, Vec<i64>) {
            let start_us = self.t_us;
            let sample = self.exchange(profile);
            let correction = clock.add_sample(sample, sample.received);
            clock.check_invariants();
            let mut errors = Vec::new();
            let mut previous = clock.now(self.mono());
            for quarter in 1..=4 {
                self.t_us = start_us + quarter * SECOND_US / 4;
                let reading = clock.peek(self.mono());
                assert!(reading >= previous, "system time went backwards");
                previous = reading;
                errors.push(self.error_us(clock));
            }
            (correction, errors)
        }
    }

    fn drifted(base_us: u64, t_us: u64, drift_ppb: i64) -> u64 {
        let drift_us = i128::from(t_us) * i128::from(drift_ppb) / 1_000_000_000;
        (i128::from(base_us) + i128::from(t_us) + drift_us) as u64
    }

    /// How far the offset may move between two readings: 500 ppm, plus 2 µs for flooring
    /// both readings.
    fn slew_bound_us(from: MonoUs, to: MonoUs) -> u64 {
        (to.0 - from.0) / 2_000 + 2
    }

    /// Runs `seconds` of samples and returns the largest |error| seen.
    fn run(world: &mut World, clock: &mut SystemClock, profile: &Profile, seconds: u64) -> u64 {
        let mut worst_us = 0;
        for _ in 0..seconds {
            let (_, errors) = world.second(clock, profile);
            worst_us = errors.iter().map(|e| e.unsigned_abs()).fold(worst_us, u64::max);
        }
        worst_us
    }

    fn synced_world(seed: u64) -> (World, SystemClock) {
        let mut world = World::new(seed);
        let skew_us = world.rng.gen_range(-10_000_000..=10_000_000);
        let mut clock = world.clock(skew_us);
        run(&mut world, &mut clock, &lan(), 60);
        (world, clock)
    }

    #[test]
    fn offset_and_round_trip_follow_the_ntp_formulas() {
        let sample = TimeSample {
            sent: MonoUs(1_000),
            peer_received: SystemUs(50_600),
            peer_sent: SystemUs(50_700),
            received: MonoUs(1_500),
            peer_error_us: 0,
        };
        // ((50_600 − 1_000) + (50_700 − 1_500)) / 2
        assert_eq!(sample.offset_us(), 49_400);
        assert_eq!(sample.round_trip_us(), 400);
    }

    #[test]
    fn nonsense_samples_saturate_and_are_ignored() {
        let absurd = TimeSample {
            sent: MonoUs(u64::MAX),
            peer_received: SystemUs(0),
            peer_sent: SystemUs(u64::MAX),
            received: MonoUs(0),
            peer_error_us: u64::MAX,
        };
        assert_eq!(absurd.round_trip_us(), 0);
        assert_eq!(absurd.offset_us(), 0);
        let mut clock = SystemClock::new(MonoUs(10), SystemUs(100));
        assert_eq!(clock.add_sample(absurd, MonoUs(u64::MAX)), Correction::None);
        assert!(!clock.synced());
        assert_eq!(clock.error_bound_us(MonoUs(20)), u64::MAX);
    }

    #[test]
    fn first_sample_steps_provisional_time_in_either_direction() {
        for skew_us in [-10_000_000, 10_000_000] {
            let mut world = World::new(1);
            let mut clock = world.clock(skew_us);
            clock.now(world.mono());
            let (correction, errors) = world.second(&mut clock, &lan());
            let Correction::Step { by_us } = correction else { panic!("{correction:?}") };
            assert!(by_us.abs_diff(-skew_us) < 1_000, "stepped {by_us} for skew {skew_us}");
            assert!(errors.iter().all(|e| e.abs() < 1_000), "{errors:?}");
            assert!(clock.synced());
        }
    }

    #[test]
    fn lan_profile_stays_within_1ms_of_the_primary_after_60s() {
        let (mut worst_all_us, mut bound_max_us) = (0, 0);
        for seed in 0..20 {
            let (mut world, mut clock) = synced_world(seed);
            let worst_us = run(&mut world, &mut clock, &lan(), 600);
            assert!(worst_us <= 1_000, "seed {seed}: error {worst_us} µs");
            let bound_us = clock.error_bound_us(world.mono());
            assert!(bound_us >= worst_us && bound_us < 2_000, "seed {seed}: bound {bound_us} µs");
            worst_all_us = worst_all_us.max(worst_us);
            bound_max_us = bound_max_us.max(bound_us);
        }
        println!(
            "LAN: |error| max {worst_all_us} µs over 20 seeds, error bound up to {bound_max_us} µs"
        );
    }

    #[test]
    fn slewing_changes_the_offset_at_most_500ppm() {
        let mut world = World::new(7);
        let mut clock = world.clock(3_000_000);
        world.second(&mut clock, &lan());
        let mut previous = (world.mono(), clock.offset_us(world.mono()));
        for _ in 0..120 {
            let (correction, _) = world.second(&mut clock, &lan());
            assert_eq!(correction, Correction::Slew);
            let mono = world.mono();
            let offset_us = clock.offset_us(mono);
            let allowed_us = slew_bound_us(previous.0, mono);
            assert!(
                offset_us.abs_diff(previous.1) <= allowed_us,
                "offset moved {} µs",
                offset_us - previous.1
            );
            previous = (mono, offset_us);
        }
    }

    #[test]
    fn asymmetric_delays_err_by_at_most_half_the_asymmetry() {
        let profile = Profile { out_us: 2_000..=2_000, back_us: 10_000..=10_000 };
        for seed in 0..5 {
            let mut world = World::new(seed);
            let mut clock = world.clock(-4_000_000);
            run(&mut world, &mut clock, &profile, 60);
            let worst_us = run(&mut world, &mut clock, &profile, 600);
            assert!(
                worst_us <= profile.half_asymmetry_us() + 1_000,
                "seed {seed}: error {worst_us} µs"
            );
            println!("2 ms / 10 ms asymmetric, seed {seed}: |error| max {worst_us} µs");
        }
    }

    #[test]
    fn wan_profile_error_is_bounded_by_half_the_asymmetry() {
        let profile = Profile { out_us: 20_000..=40_000, back_us: 60_000..=80_000 };
        let mut errors_us = Vec::new();
        for seed in 0..10 {
            let mut world = World::new(seed);
            let mut clock = world.clock(8_000_000);
            run(&mut world, &mut clock, &profile, 60);
            for _ in 0..600 {
                let (_, errors) = world.second(&mut clock, &profile);
                errors_us.extend(errors.iter().map(|e| e.unsigned_abs()));
            }
        }
        errors_us.sort_unstable();
        let percentile = |p: usize| errors_us[(errors_us.len() - 1) * p / 100];
        println!(
            "WAN 20-80 ms asymmetric: |error| p50 {} µs, p99 {} µs, max {} µs, half the asymmetry {} µs",
            percentile(50),
            percentile(99),
            percentile(100),
            profile.half_asymmetry_us()
        );
        assert!(percentile(100) <= profile.half_asymmetry_us());
    }

    #[test]
    fn one_wild_sample_is_ignored_without_a_step() {
        let (mut world, mut clock) = synced_world(3);
        world.primary_jump_us = 3_600 * SECOND_US as i64;
        let (correction, _) = world.second(&mut clock, &lan());
        assert_eq!(correction, Correction::None);
        world.primary_jump_us = 0;
        for _ in 0..60 {
            let (correction, errors) = world.second(&mut clock, &lan());
            assert_eq!(correction, Correction::Slew);
            assert!(errors.iter().all(|e| e.abs() <= 1_000), "{errors:?}");
        }
    }

    #[test]
    fn primary_jumping_5s_ahead_is_followed_by_a_step_after_4_samples() {
        let (mut world, mut clock) = synced_world(4);
        world.primary_jump_us = 5_000_000;
        for _ in 0..CONFIRM_SAMPLES - 1 {
            assert_eq!(world.second(&mut clock, &lan()).0, Correction::None);
        }
        let (correction, errors) = world.second(&mut clock, &lan());
        let Correction::Step { by_us } = correction else { panic!("{correction:?}") };
        assert!(by_us.abs_diff(5_000_000) < 2_000, "stepped {by_us}");
        assert!(errors.iter().all(|e| e.abs() <= 2_000), "{errors:?}");
        assert!(run(&mut world, &mut clock, &lan(), 60) <= 1_000);
    }

    #[test]
    fn primary_jumping_5s_back_is_caught_down_never_backwards() {
        let (mut world, mut clock) = synced_world(5);
        world.primary_jump_us = -5_000_000;
        for _ in 0..CONFIRM_SAMPLES - 1 {
            assert_eq!(world.second(&mut clock, &lan()).0, Correction::None);
        }
        let (correction, _) = world.second(&mut clock, &lan());
        let Correction::CatchDown { by_us } = correction else { panic!("{correction:?}") };
        assert!(by_us.abs_diff(5_000_000) < 2_000, "caught down {by_us}");
        // Half speed closes 5 s in about 10 s; `second` asserts no reading ever goes back.
        run(&mut world, &mut clock, &lan(), 12);
        assert!(run(&mut world, &mut clock, &lan(), 60) <= 1_000);
    }

    #[test]
    fn source_change_keeps_the_offset_and_then_slews() {
        let (mut world, mut clock) = synced_world(6);
        let mono = world.mono();
        let before_us = clock.offset_us(mono);
        clock.set_source(false);
        assert_eq!(clock.offset_us(mono), before_us);
        // The new primary is 20 ms ahead: confirmed by four samples, then slewed, not stepped.
        world.primary_jump_us = 20_000;
        let mut previous = (mono, before_us);
        let mut corrections = Vec::new();
        for _ in 0..60 {
            let (correction, _) = world.second(&mut clock, &lan());
            corrections.push(correction);
            let mono = world.mono();
            let offset_us = clock.offset_us(mono);
            assert!(offset_us.abs_diff(previous.1) <= slew_bound_us(previous.0, mono));
            previous = (mono, offset_us);
        }
        assert_eq!(corrections[..CONFIRM_SAMPLES - 1], [Correction::None; CONFIRM_SAMPLES - 1]);
        assert!(
            corrections[CONFIRM_SAMPLES - 1..].iter().all(|c| *c == Correction::Slew),
            "{corrections:?}"
        );
        assert!(run(&mut world, &mut clock, &lan(), 600) <= 1_000);
    }

    #[test]
    fn catch_down_in_progress_continues_across_a_source_change() {
        let (mut world, mut clock) = synced_world(9);
        world.primary_jump_us = -2_000_000;
        for _ in 0..CONFIRM_SAMPLES {
            world.second(&mut clock, &lan());
        }
        assert!(clock.error_bound_us(world.mono()) > 1_000_000, "the catch-down is in the bound");
        // The new primary shares the old one's time: its first sample continues the catch-down.
        clock.set_source(false);
        let (correction, _) = world.second(&mut clock, &lan());
        assert!(matches!(correction, Correction::CatchDown { .. }), "{correction:?}");
        run(&mut world, &mut clock, &lan(), 5);
        assert!(run(&mut world, &mut clock, &lan(), 60) <= 1_000);
    }

    #[test]
    fn becoming_the_primary_keeps_time_and_has_no_error() {
        let (world, mut clock) = synced_world(8);
        let mono = world.mono();
        let before = clock.now(mono);
        clock.set_source(true);
        assert_eq!(clock.peek(mono), before);
        assert_eq!(clock.error_bound_us(mono), 0);
        assert!(clock.synced());
        let mut world = world;
        let sample = world.exchange(&lan());
        assert_eq!(clock.add_sample(sample, sample.received), Correction::None);
    }

    #[test]
    fn a_primary_on_its_own_clock_is_synced_without_samples() {
        let mut clock = SystemClock::new(MonoUs(5), SystemUs(1_000));
        assert!(!clock.synced());
        clock.set_source(true);
        assert!(clock.synced());
        assert_eq!(clock.now(MonoUs(1_005)), SystemUs(2_000));
    }

    /// A step in a property test: a sample (absurd or plausible), a reading, or a source change.
    #[derive(Clone, Debug)]
    enum Op {
        Absurd(u64, u64, u64, u64),
        Plausible {
            ago_us: u64,
            rtt_us: u64,
            peer_us: u64,
        },
        /// A sample near the source's time, `skew_us` off the first offset seen.
        Near {
            rtt_us: u64,
            skew_us: i64,
        },
        Advance(u64),
        SetSource(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(a, b, c, d)| Op::Absurd(a, b, c, d)),
            (0u64..100_000_000, 0u64..1_000_000, any::<u64>())
                .prop_map(|(ago_us, rtt_us, peer_us)| Op::Plausible { ago_us, rtt_us, peer_us }),
            (0u64..2_000, -200_000i64..=200_000)
                .prop_map(|(rtt_us, skew_us)| Op::Near { rtt_us, skew_us }),
            (0u64..10_000_000).prop_map(Op::Advance),
            any::<u64>().prop_map(Op::Advance),
            any::<bool>().prop_map(Op::SetSource),
        ]
    }

    proptest! {
        #[test]
        fn now_never_decreases_and_nothing_panics(
            start in any::<u64>(),
            initial in any::<u64>(),
            near_offset_us in any::<u64>(),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut mono = MonoUs(start);
            let mut clock = SystemClock::new(mono, SystemUs(initial));
            let mut previous = clock.now(mono);
            for op in ops {
                let was_synced = clock.synced();
                match op {
                    Op::Absurd(a, b, c, d) => {
                        let sample = TimeSample {
                            sent: MonoUs(a),
                            peer_received: SystemUs(b),
                            peer_sent: SystemUs(c),
                            received: MonoUs(d),
                            peer_error_us: a ^ d,
                        };
                        clock.add_sample(sample, mono);
                    }
                    Op::Plausible { ago_us, rtt_us, peer_us } => {
                        let sent = MonoUs(mono.0.saturating_sub(ago_us.saturating_add(rtt_us)));
                        let received = MonoUs(sent.0.saturating_add(rtt_us).min(mono.0));
                        let sample = TimeSample {
                            sent,
                            peer_received: SystemUs(peer_us),
                            peer_sent: SystemUs(peer_us.saturating_add(10).min(peer_us.saturating_add(rtt_us))),
                            received,
                            peer_error_us: rtt_us,
                        };
                        clock.add_sample(sample, mono);
                    }
                    Op::Near { rtt_us, skew_us } => {
                        let sent = MonoUs(mono.0.saturating_sub(rtt_us));
                        let peer = SystemUs(sent.0.saturating_add(near_offset_us).saturating_add_signed(skew_us));
                        let sample = TimeSample { sent, peer_received: peer, peer_sent: peer, received: mono, peer_error_us: 0 };
                        clock.add_sample(sample, mono);
                    }
                    Op::Advance(by_us) => mono = MonoUs(mono.0.saturating_add(by_us)),
                    Op::SetSource(to_self) => clock.set_source(to_self),
                }
                clock.check_invariants();
                let reading = clock.now(mono);
                // Only the first sample of a run may step provisional time back.
                prop_assert!(reading >= previous || !was_synced, "{reading:?} < {previous:?}");
                previous = reading;
                clock.error_bound_us(mono);
                clock.offset_us(mono);
            }
        }

        #[test]
        fn source_change_never_jumps_more_than_the_slew_bound(
            seed in any::<u64>(),
            jump_us in -100_000i64..=100_000,
            to_self in any::<bool>(),
        ) {
            let (mut world, mut clock) = synced_world(seed);
            let mut previous = (world.mono(), clock.offset_us(world.mono()));
            clock.set_source(to_self);
            world.primary_jump_us = jump_us;
            for _ in 0..10 {
                world.second(&mut clock, &lan());
                let mono = world.mono();
                let offset_us = clock.offset_us(mono);
                prop_assert!(offset_us.abs_diff(previous.1) <= slew_bound_us(previous.0, mono));
                previous = (mono, offset_us);
            }
        }
    }
}
