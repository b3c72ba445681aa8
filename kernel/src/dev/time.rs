//! Time: a monotonic nanosecond clock from the TSC, its calibration against a reference timer,
//! the HPET as that reference, and per-task deadlines.
//!
//! Owns the arithmetic; the kernel supplies the readings. Calibration counts TSC ticks over a
//! known number of reference ticks (HPET main counter, or PIT channel 2 where there is no HPET)
//! read through a [`CalibrationSource`]; the reference may be narrower than 64 bits or count
//! down, and is accumulated poll by poll so that it may wrap during the interval. The
//! [`Clock`] converts with a 32.32 fixed-point multiplier in 128-bit arithmetic, so no
//! conversion can overflow (results saturate) and none divides at run time.
//!
//! Invariants: the clock never goes backwards for a non-decreasing TSC (the TSC is assumed
//! invariant, which every CPU the project targets has; a TSC below the boot value reads as 0);
//! nanoseconds-to-ticks rounds up, so a deadline never fires early; [`Deadlines`] holds at most
//! one deadline per task and fires them earliest first.

use alloc::vec::Vec;
use core::fmt;

use super::mmio::Mmio;
use nc2dd_abi::system_table::MAX_TASKS;

/// Femtoseconds per second.
const FS_PER_S: u128 = 1_000_000_000_000_000;
const NS_PER_S: u128 = 1_000_000_000;
/// Fixed-point fraction bits of the conversion multipliers.
const SHIFT: u32 = 32;

/// The PIT's input clock period (1.193182 MHz), rounded to the femtosecond.
pub const PIT_PERIOD_FS: u64 = 838_095_345;
/// PIT channel 2 as a reference: a 16-bit down-counter.
pub const PIT_REFERENCE: Reference = Reference {
    period_fs: PIT_PERIOD_FS,
    mask: 0xFFFF,
    counts_down: true,
};

/// The slowest and fastest TSC a calibration may report; outside this it measured noise.
pub const MIN_TSC_HZ: u64 = 1_000_000;
pub const MAX_TSC_HZ: u64 = 100_000_000_000;

/// A counter of known period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Femtoseconds per tick.
    pub period_fs: u64,
    /// The counter's width as a mask (`u32::MAX` for a 32-bit counter).
    pub mask: u64,
    pub counts_down: bool,
}

impl Reference {
    /// Ticks from reading `from` to reading `to`, assuming less than one wrap between them.
    pub fn elapsed(&self, from: u64, to: u64) -> u64 {
        let d = if self.counts_down {
            from.wrapping_sub(to)
        } else {
            to.wrapping_sub(from)
        };
        d & self.mask
    }
}

/// The raw readings calibration needs.
pub trait CalibrationSource {
    fn reference(&self) -> Reference;
    fn read_reference(&mut self) -> u64;
    fn read_tsc(&mut self) -> u64;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// The reference did not advance (disabled HPET, absent PIT).
    ReferenceStuck,
    TscNotAdvancing,
    /// The measured frequency is outside `MIN_TSC_HZ..=MAX_TSC_HZ`.
    Implausible {
        hz: u64,
    },
    /// An HPET period of 0 or above the 100 ns the specification allows.
    BadHpetPeriod {
        fs: u64,
    },
    NoRounds,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TimeError::ReferenceStuck => write!(f, "the reference timer does not advance"),
            TimeError::TscNotAdvancing => write!(f, "the TSC does not advance"),
            TimeError::Implausible { hz } => {
                write!(f, "measured TSC frequency {hz} Hz is implausible")
            }
            TimeError::BadHpetPeriod { fs } => {
                write!(f, "HPET period {fs} fs is outside 1..=100000000")
            }
            TimeError::NoRounds => write!(f, "calibration needs at least one round"),
        }
    }
}

/// A TSC reading paired with a reference reading taken right before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub tsc: u64,
    pub reference: u64,
}

/// TSC frequency from `tsc_ticks` counted over `reference_ticks` of `reference`.
pub fn tsc_hz(
    reference: &Reference,
    reference_ticks: u64,
    tsc_ticks: u64,
) -> Result<u64, TimeError> {
    if reference_ticks == 0 || reference.period_fs == 0 {
        return Err(TimeError::ReferenceStuck);
    }
    if tsc_ticks == 0 {
        return Err(TimeError::TscNotAdvancing);
    }
    let elapsed_fs = u128::from(reference_ticks) * u128::from(reference.period_fs);
    let hz = u128::from(tsc_ticks) * FS_PER_S / elapsed_fs;
    let hz = u64::try_from(hz).unwrap_or(u64::MAX);
    if !(MIN_TSC_HZ..=MAX_TSC_HZ).contains(&hz) {
        return Err(TimeError::Implausible { hz });
    }
    Ok(hz)
}

/// Measures the TSC over `interval` reference ticks, `rounds` times, and returns the median
/// frequency. Each round polls the reference at most `max_polls` times; the reference is
/// accumulated between polls, so it may wrap as long as each poll sees less than one wrap.
pub fn calibrate<S: CalibrationSource + ?Sized>(
    source: &mut S,
    interval: u64,
    rounds: usize,
    max_polls: u64,
) -> Result<u64, TimeError> {
    if rounds == 0 {
        return Err(TimeError::NoRounds);
    }
    let reference = source.reference();
    let mut results = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut previous = source.read_reference();
        let start_tsc = source.read_tsc();
        let mut elapsed = 0u64;
        let mut polls = 0u64;
        let end_tsc = loop {
            let now = source.read_reference();
            let tsc = source.read_tsc();
            elapsed = elapsed.saturating_add(reference.elapsed(previous, now));
            previous = now;
            if elapsed >= interval {
                break tsc;
            }
            polls += 1;
            if polls >= max_polls {
                return Err(TimeError::ReferenceStuck);
            }
        };
        results.push(tsc_hz(
            &reference,
            elapsed,
            end_tsc.wrapping_sub(start_tsc),
        )?);
    }
    results.sort_unstable();
    Ok(results[results.len() / 2])
}

/// Monotonic nanoseconds since `base_tsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    base_tsc: u64,
    hz: u64,
    /// Nanoseconds per tick, 32.32 fixed point, rounded to nearest.
    ns_per_tick: u64,
    /// Ticks per nanosecond, 32.32 fixed point, rounded up.
    ticks_per_ns: u64,
}

impl Clock {
    /// A clock for a TSC of `hz` that reads 0 at `base_tsc`.
    pub fn new(hz: u64, base_tsc: u64) -> Result<Clock, TimeError> {
        if !(MIN_TSC_HZ..=MAX_TSC_HZ).contains(&hz) {
            return Err(TimeError::Implausible { hz });
        }
        let hz128 = u128::from(hz);
        let ns_per_tick = ((NS_PER_S << SHIFT) + hz128 / 2) / hz128;
        let ticks_per_ns = (hz128 << SHIFT).div_ceil(NS_PER_S);
        Ok(Clock {
            base_tsc,
            hz,
            // Both fit: at least 1 MHz gives at most 2^42, at most 100 GHz at most 2^39.
            ns_per_tick: ns_per_tick as u64,
            ticks_per_ns: ticks_per_ns as u64,
        })
    }

    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Nanoseconds for `ticks` TSC ticks (saturating).
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) * u128::from(self.ns_per_tick)) >> SHIFT;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// TSC ticks for at least `ns` nanoseconds (rounded up, saturating).
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        let ticks = (u128::from(ns) * u128::from(self.ticks_per_ns)).div_ceil(1 << SHIFT);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The clock at TSC value `tsc`.
    pub fn now_ns(&self, tsc: u64) -> u64 {
        self.ticks_to_ns(tsc.saturating_sub(self.base_tsc))
    }

    /// The TSC value at which the clock reads `ns` (or later).
    pub fn tsc_at(&self, ns: u64) -> u64 {
        self.base_tsc.saturating_add(self.ns_to_ticks(ns))
    }
}

/// One pending deadline per task, in clock nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines<const N: usize = MAX_TASKS> {
    slots: [Option<(u64, u8)>; N],
}

impl<const N: usize> Default for Deadlines<N> {
    fn default() -> Self {
        Deadlines { slots: [None; N] }
    }
}

impl<const N: usize> Deadlines<N> {
    /// Sets (or replaces) `task`'s deadline: at `at_ns` post `bit`. `false` if there is no such
    /// task slot.
    pub fn set(&mut self, task: usize, at_ns: u64, bit: u8) -> bool {
        match self.slots.get_mut(task) {
            Some(slot) if bit < 64 => {
                *slot = Some((at_ns, bit));
                true
            }
            _ => false,
        }
    }

    /// Removes `task`'s deadline, returning when it would have fired.
    pub fn cancel(&mut self, task: usize) -> Option<u64> {
        self.slots.get_mut(task)?.take().map(|(at, _)| at)
    }

    /// The earliest pending deadline (what to program the timer for).
    pub fn next(&self) -> Option<u64> {
        self.slots.iter().flatten().map(|&(at, _)| at).min()
    }

    /// Removes every deadline at or before `now_ns` and calls `fire(task, bit)` for each,
    /// earliest first (ties in task order).
    pub fn expire(&mut self, now_ns: u64, mut fire: impl FnMut(usize, u8)) {
        loop {
            let due = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(task, s)| s.map(|(at, bit)| (at, task, bit)))
                .filter(|&(at, _, _)| at <= now_ns)
                .min();
            let Some((_, task, bit)) = due else { return };
            self.slots[task] = None;
            fire(task, bit);
        }
    }
}

/// HPET register offsets.
mod hpet_reg {
    pub const CAPABILITIES: usize = 0x00;
    pub const PERIOD: usize = 0x04;
    pub const CONFIG: usize = 0x10;
    pub const COUNTER: usize = 0xF0;
}
/// Capabilities: the main counter is 64 bits wide.
const HPET_COUNT_SIZE_64: u32 = 1 << 13;
/// Configuration: the main counter runs.
const HPET_ENABLE: u32 = 1;
/// The specification's longest period: 100 ns.
const HPET_MAX_PERIOD_FS: u64 = 100_000_000;

/// The HPET's main counter, through its mapped register block (at `Platform::hpet`'s base).
pub struct Hpet<M: Mmio> {
    mmio: M,
    period_fs: u64,
    wide: bool,
}

impl<M: Mmio> Hpet<M> {
    /// Reads and checks the capabilities register.
    pub fn new(mmio: M) -> Result<Self, TimeError> {
        let caps = mmio.read32(hpet_reg::CAPABILITIES);
        let period_fs = u64::from(mmio.read32(hpet_reg::PERIOD));
        if period_fs == 0 || period_fs > HPET_MAX_PERIOD_FS {
            return Err(TimeError::BadHpetPeriod { fs: period_fs });
        }
        Ok(Hpet {
            mmio,
            period_fs,
            wide: caps & HPET_COUNT_SIZE_64 != 0,
        })
    }

    pub fn period_fs(&self) -> u64 {
        self.period_fs
    }

    /// Starts the main counter (other configuration bits unchanged).
    pub fn enable(&self) {
        let c = self.mmio.read32(hpet_reg::CONFIG);
        self.mmio.write32(hpet_reg::CONFIG, c | HPET_ENABLE);
    }

    pub fn counter(&self) -> u64 {
        if self.wide {
            self.mmio.read64_split(hpet_reg::COUNTER)
        } else {
            u64::from(self.mmio.read32(hpet_reg::COUNTER))
        }
    }

    pub fn reference(&self) -> Reference {
        Reference {
            period_fs: self.period_fs,
            mask: if self.wide {
                u64::MAX
            } else {
                u64::from(u32::MAX)
            },
            counts_down: false,
        }
    }
}

/// Calibration against the HPET, with the caller's TSC reader (the kernel passes `rdtsc`).
pub struct HpetCalibration<M: Mmio, T: FnMut() -> u64> {
    pub hpet: Hpet<M>,
    pub tsc: T,
}

impl<M: Mmio, T: FnMut() -> u64> CalibrationSource for HpetCalibration<M, T> {
    fn reference(&self) -> Reference {
        self.hpet.reference()
    }
    fn read_reference(&mut self) -> u64 {
        self.hpet.counter()
    }
    fn read_tsc(&mut self) -> u64 {
        (self.tsc)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::mmio::fake::FakeMmio;
    use std::vec;

    /// A simulated machine: every reading advances true time by `step_fs` plus jitter; the TSC
    /// and the reference count from true time.
    struct Sim {
        now_fs: u128,
        step_fs: u128,
        tsc_hz: u128,
        reference: Reference,
        seed: u64,
    }

    impl Sim {
        fn tick(&mut self) {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            self.now_fs += self.step_fs + u128::from(self.seed % 1000) * 1000;
        }
    }

    impl CalibrationSource for Sim {
        fn reference(&self) -> Reference {
            self.reference
        }
        fn read_reference(&mut self) -> u64 {
            self.tick();
            let ticks = (self.now_fs / u128::from(self.reference.period_fs)) as u64;
            if self.reference.counts_down {
                (!ticks) & self.reference.mask
            } else {
                ticks & self.reference.mask
            }
        }
        fn read_tsc(&mut self) -> u64 {
            self.tick();
            (self.now_fs * self.tsc_hz / FS_PER_S) as u64
        }
    }

    fn within(measured: u64, truth: u64, ppm: u64) -> bool {
        measured.abs_diff(truth) * 1_000_000 <= truth * ppm
    }

    #[test]
    fn frequency_math() {
        let hpet = Reference {
            period_fs: 100_000_000, // 10 MHz
            mask: u64::MAX,
            counts_down: false,
        };
        assert_eq!(tsc_hz(&hpet, 100_000, 25_000_000), Ok(2_500_000_000));
        assert_eq!(tsc_hz(&hpet, 0, 1), Err(TimeError::ReferenceStuck));
        assert_eq!(tsc_hz(&hpet, 1, 0), Err(TimeError::TscNotAdvancing));
        assert_eq!(
            tsc_hz(&hpet, 100_000, 5),
            Err(TimeError::Implausible { hz: 500 })
        );
        assert_eq!(PIT_REFERENCE.elapsed(0x0005, 0xFFF0), 0x15);
        assert_eq!(PIT_REFERENCE.elapsed(0x1000, 0x0800), 0x800);
        let narrow = Reference {
            mask: u64::from(u32::MAX),
            ..hpet
        };
        assert_eq!(narrow.elapsed(0xFFFF_FFF0, 0x10), 0x20);
    }

    #[test]
    fn calibrates_against_hpet_and_a_wrapping_pit() {
        // QEMU's HPET: 14.31818 MHz, a 32-bit counter that starts near its wrap.
        let mut sim = Sim {
            now_fs: u128::from(u32::MAX - 1000) * 69_841_279,
            step_fs: 2_000_000_000, // 2 us between readings
            tsc_hz: 2_994_000_000,
            reference: Reference {
                period_fs: 69_841_279,
                mask: u64::from(u32::MAX),
                counts_down: false,
            },
            seed: 7,
        };
        let hz = calibrate(&mut sim, 143_182, 5, 1_000_000).unwrap();
        assert!(within(hz, 2_994_000_000, 100), "{hz}");

        // 50 ms on the PIT: the 16-bit down-counter wraps during the interval.
        let mut sim = Sim {
            now_fs: 0,
            step_fs: 5_000_000_000,
            tsc_hz: 1_800_000_000,
            reference: PIT_REFERENCE,
            seed: 99,
        };
        let hz = calibrate(&mut sim, 59_659, 3, 1_000_000).unwrap();
        assert!(within(hz, 1_800_000_000, 300), "{hz}");
    }

    #[test]
    fn stuck_reference_is_an_error_not_a_hang() {
        struct Stuck(u64);
        impl CalibrationSource for Stuck {
            fn reference(&self) -> Reference {
                PIT_REFERENCE
            }
            fn read_reference(&mut self) -> u64 {
                0x1234
            }
            fn read_tsc(&mut self) -> u64 {
                self.0 += 100;
                self.0
            }
        }
        assert_eq!(
            calibrate(&mut Stuck(0), 1000, 3, 10_000),
            Err(TimeError::ReferenceStuck)
        );
        assert_eq!(
            calibrate(&mut Stuck(0), 1000, 0, 1),
            Err(TimeError::NoRounds)
        );
    }

    #[test]
    fn conversions_match_exact_arithmetic_and_never_overflow() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for hz in [
            MIN_TSC_HZ,
            1_193_182,
            2_500_000_000,
            3_333_333_333,
            MAX_TSC_HZ,
        ] {
            let c = Clock::new(hz, 0).unwrap();
            for shift in [0u32, 10, 20, 30, 40, 50, 60] {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let ticks = seed >> shift;
                let exact = u128::from(ticks) * NS_PER_S / u128::from(hz);
                let ns = c.ticks_to_ns(ticks);
                if exact <= u128::from(u64::MAX) {
                    let exact = exact as u64;
                    // Relative error below 1e-7 plus one nanosecond of rounding.
                    assert!(ns.abs_diff(exact) <= exact / 10_000_000 + 1, "{hz} {ticks}");
                } else {
                    assert_eq!(ns, u64::MAX);
                }
                // Round trip: a deadline's ticks never come out early.
                let back = c.ns_to_ticks(ns.min(u64::MAX / 2));
                let exact_ticks =
                    (u128::from(ns.min(u64::MAX / 2)) * u128::from(hz)).div_ceil(NS_PER_S);
                assert!(u128::from(back) >= exact_ticks.min(u128::from(u64::MAX)));
            }
            if hz > NS_PER_S as u64 {
                assert_eq!(c.ns_to_ticks(u64::MAX), u64::MAX, "saturates");
            } else {
                assert_eq!(c.ticks_to_ns(u64::MAX), u64::MAX, "saturates");
            }
        }
        let c = Clock::new(2_000_000_000, 1_000).unwrap();
        assert_eq!(c.now_ns(1_000), 0);
        assert_eq!(c.now_ns(500), 0, "a TSC below the base reads as 0");
        assert_eq!(c.now_ns(3_000), 1_000);
        assert_eq!(c.tsc_at(1_000), 3_000);
        assert_eq!(c.ns_to_ticks(1), 2);
        assert_eq!(Clock::new(10, 0), Err(TimeError::Implausible { hz: 10 }));
    }

    #[test]
    fn deadlines_fire_earliest_first_once() {
        let mut d: Deadlines = Deadlines::default();
        assert!(d.set(3, 500, 7));
        assert!(d.set(1, 300, 2));
        assert!(d.set(2, 300, 9));
        assert!(d.set(4, 900, 1));
        assert!(
            d.set(4, 800, 1),
            "a task's new deadline replaces its old one"
        );
        assert!(!d.set(MAX_TASKS, 1, 1));
        assert!(!d.set(0, 1, 64));
        assert_eq!(d.next(), Some(300));
        let mut fired = vec![];
        d.expire(299, |t, b| fired.push((t, b)));
        assert!(fired.is_empty());
        d.expire(500, |t, b| fired.push((t, b)));
        assert_eq!(fired, vec![(1, 2), (2, 9), (3, 7)]);
        assert_eq!(d.next(), Some(800));
        d.expire(500, |t, b| fired.push((t, b)));
        assert_eq!(fired.len(), 3, "fired deadlines are gone");
        assert_eq!(d.cancel(4), Some(800));
        assert_eq!(d.cancel(4), None);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn hpet_period_counter_and_enable() {
        let mmio = FakeMmio::new(0x400);
        mmio.set(0x00, 0x8086_A201 | HPET_COUNT_SIZE_64);
        mmio.set(0x04, 69_841_279);
        mmio.set(0x10, 0b10); // legacy routing bit, must survive
        mmio.set(0xF0, 0xDEAD_BEEF);
        mmio.set(0xF4, 0x12);
        let hpet = Hpet::new(&mmio).unwrap();
        assert_eq!(hpet.period_fs(), 69_841_279);
        assert_eq!(hpet.counter(), 0x12_DEAD_BEEF);
        assert_eq!(hpet.reference().mask, u64::MAX);
        hpet.enable();
        assert_eq!(mmio.get(0x10), 0b11);

        mmio.set(0x00, 0x8086_A201 & !HPET_COUNT_SIZE_64);
        let narrow = Hpet::new(&mmio).unwrap();
        assert_eq!(narrow.counter(), 0xDEAD_BEEF);
        assert_eq!(narrow.reference().mask, u64::from(u32::MAX));

        for bad in [0, 100_000_001] {
            mmio.set(0x04, bad);
            assert_eq!(
                Hpet::new(&mmio).err(),
                Some(TimeError::BadHpetPeriod { fs: u64::from(bad) })
            );
        }

        // Calibration through the HPET type: a 10 MHz counter that advances one tick per read
        // of its low half, and a TSC that advances 250 ticks per read: 2.5 GHz.
        struct Ticking(core::cell::Cell<u64>);
        impl Mmio for Ticking {
            fn read32(&self, offset: usize) -> u32 {
                match offset {
                    0x00 => 0x8086_A201 | HPET_COUNT_SIZE_64,
                    0x04 => 100_000_000,
                    0xF0 => {
                        self.0.set(self.0.get() + 1);
                        self.0.get() as u32
                    }
                    0xF4 => (self.0.get() >> 32) as u32,
                    _ => 0,
                }
            }
            fn write32(&self, _offset: usize, _value: u32) {}
        }
        let mut tsc = 0u64;
        let mut cal = HpetCalibration {
            hpet: Hpet::new(Ticking(core::cell::Cell::new(u64::from(u32::MAX) - 10))).unwrap(),
            tsc: || {
                tsc += 250;
                tsc
            },
        };
        assert_eq!(calibrate(&mut cal, 1000, 3, 10_000), Ok(2_500_000_000));
        assert!(
            cal.read_reference() > u64::from(u32::MAX),
            "the counter crossed 2^32"
        );
    }
}
