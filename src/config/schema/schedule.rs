//! `[[camera.schedule]]` and `[[camera.snapshot_schedule]]`: windows of the
//! week in the node's local time (`days`, `from`, `to`), and what happens
//! inside them. The spellings are checked while the file is read, so a bad
//! day or time is reported with its key and line like any type error.

use super::RecordMode;
use serde::Deserialize;
use std::fmt;

/// Day names in the order of the bits of `Days` (Monday first).
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Minutes in a day: `24:00`, the end of a window that runs to midnight.
pub const DAY_MINUTES: u16 = 1440;

/// A set of weekdays; bit 0 is Monday.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days(pub u8);

impl Days {
    /// Every day.
    pub const DAILY: Days = Days(0x7f);
    /// Monday to Friday.
    pub const WEEKDAYS: Days = Days(0x1f);
    /// Saturday and Sunday.
    pub const WEEKENDS: Days = Days(0x60);

    /// Whether the set holds weekday `day` (0 = Monday .. 6 = Sunday).
    pub fn has(self, day: u8) -> bool {
        day < 7 && self.0 & (1 << day) != 0
    }

    /// One name or group (`mon`, `weekdays`, …); `None` for anything else.
    pub fn parse(name: &str) -> Option<Days> {
        match name {
            "daily" => Some(Self::DAILY),
            "weekdays" => Some(Self::WEEKDAYS),
            "weekends" => Some(Self::WEEKENDS),
            _ => DAY_NAMES.iter().position(|d| *d == name).map(|i| Days(1 << i)),
        }
    }
}

impl Default for Days {
    fn default() -> Self {
        Self::DAILY
    }
}

impl fmt::Display for Days {
    /// In words: `daily`, `weekdays`, `weekends`, or the names (`mon, wed, fri`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DAILY => f.write_str("daily"),
            Self::WEEKDAYS => f.write_str("weekdays"),
            Self::WEEKENDS => f.write_str("weekends"),
            Days(bits) => {
                let names: Vec<&str> = (0..7).filter(|d| bits & (1 << d) != 0).map(|d| DAY_NAMES[d]).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

const DAYS_EXPECTED: &str = "mon, tue, wed, thu, fri, sat, sun, daily, weekdays or weekends (one, or a list)";

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spelled {
            One(String),
            Many(Vec<String>),
        }
        let names = match Spelled::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom(format!("days must be {DAYS_EXPECTED}")))?
        {
            Spelled::One(name) => vec![name],
            Spelled::Many(names) => names,
        };
        if names.is_empty() {
            return Err(serde::de::Error::custom(format!("no days given: use {DAYS_EXPECTED}")));
        }
        let mut days = Days(0);
        for name in &names {
            let one = Days::parse(name.trim().to_ascii_lowercase().as_str())
                .ok_or_else(|| serde::de::Error::custom(format!("{name:?} is no day: use {DAYS_EXPECTED}")))?;
            days.0 |= one.0;
        }
        Ok(days)
    }
}

/// A time of day `HH:MM` as minutes after midnight, 0..=1440 (`24:00` ends a day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(pub u16);

impl ClockTime {
    /// Parses `HH:MM` (`00:00`..`23:59`, and `24:00`).
    pub fn parse(text: &str) -> Option<ClockTime> {
        let (h, m) = text.split_once(':')?;
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let minutes = h * 60 + m;
        (m < 60 && minutes <= DAY_MINUTES).then_some(ClockTime(minutes))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ClockTime::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is no time of day: use HH:MM, 00:00 to 23:59 (24:00 as `to`)"))
        })
    }
}

/// When a window is open: on `days`, from `from` to `to` in the node's local time; a `to`
/// at or before `from` runs past midnight into the next day (`to` = `from`: 24 hours).
pub trait Window {
    /// The days it opens on.
    fn days(&self) -> Days;
    /// Minutes after midnight it opens.
    fn opens_at(&self) -> u16;
    /// Minutes after midnight it closes (1440: midnight).
    fn closes_at(&self) -> u16;

    /// Whether it is open at `minute` (0..1440) of weekday `day` (0 = Monday).
    fn contains(&self, day: u8, minute: u16) -> bool {
        let (days, from, to) = (self.days(), self.opens_at(), self.closes_at());
        if from < to {
            days.has(day) && (from..to).contains(&minute)
        } else {
            // Past midnight: the evening of its day, and the morning of the next.
            (days.has(day) && minute >= from) || (days.has((day + 6) % 7) && minute < to)
        }
    }

    /// In words: `weekdays 18:00–08:00`, `daily all day`.
    fn describe(&self) -> String {
        let (from, to) = (self.opens_at(), self.closes_at());
        if from == 0 && (to == DAY_MINUTES || to == 0) {
            return format!("{} all day", self.days());
        }
        format!("{} {}–{}", self.days(), ClockTime(from), ClockTime(to % DAY_MINUTES))
    }
}

/// One `[[camera.schedule]]`: the recording mode inside a window of the week.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// The days it opens on.
    #[serde(default)]
    pub days: Days,
    /// When it opens.
    pub from: ClockTime,
    /// When it closes (at or before `from`: the next day).
    pub to: ClockTime,
    /// The mode inside it.
    #[serde(default)]
    pub record: RecordMode,
}

impl Window for ScheduleWindow {
    fn days(&self) -> Days {
        self.days
    }
    fn opens_at(&self) -> u16 {
        self.from.0
    }
    fn closes_at(&self) -> u16 {
        self.to.0
    }
}

/// One `[[camera.snapshot_schedule]]`: a still every `every_s` while its window is open.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSchedule {
    /// Seconds between snapshots, counted from `from`.
    pub every_s: u64,
    /// The days it runs on.
    #[serde(default)]
    pub days: Days,
    /// When it starts each day; midnight when absent.
    pub from: Option<ClockTime>,
    /// When it stops; midnight (the whole day) when absent.
    pub to: Option<ClockTime>,
    /// Width in pixels (aspect kept; never wider than the camera's picture).
    #[serde(default = "default_snapshot_width")]
    pub width: u32,
    /// Days the snapshots are kept.
    #[serde(default = "default_snapshot_retain_days")]
    pub retain_days: u64,
}

fn default_snapshot_width() -> u32 {
    640
}
fn default_snapshot_retain_days() -> u64 {
    30
}

impl Window for SnapshotSchedule {
    fn days(&self) -> Days {
        self.days
    }
    fn opens_at(&self) -> u16 {
        self.from.map_or(0, |t| t.0)
    }
    fn closes_at(&self) -> u16 {
        self.to.map_or(DAY_MINUTES, |t| t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_are_hh_mm_up_to_midnight() {
        assert_eq!(ClockTime::parse("00:00"), Some(ClockTime(0)));
        assert_eq!(ClockTime::parse("18:30"), Some(ClockTime(1110)));
        assert_eq!(ClockTime::parse("24:00"), Some(ClockTime(1440)));
        for bad in ["24:01", "7:00", "07:60", "0700", "07:00:00", "ab:cd", ""] {
            assert_eq!(ClockTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn overnight_windows_reach_into_the_next_morning() {
        let fri_night = ScheduleWindow {
            days: Days::parse("fri").unwrap(),
            from: ClockTime(22 * 60),
            to: ClockTime(6 * 60),
            record: RecordMode::Continuous,
        };
        assert!(fri_night.contains(4, 23 * 60), "friday evening");
        assert!(fri_night.contains(5, 5 * 60), "saturday morning");
        assert!(!fri_night.contains(5, 23 * 60), "not saturday evening");
        assert!(!fri_night.contains(4, 5 * 60), "not friday morning");
        assert_eq!(fri_night.describe(), "fri 22:00–06:00");
        let sunday = ScheduleWindow { days: Days(1 << 6), ..fri_night };
        assert!(sunday.contains(0, 60), "sunday's night ends on monday");
    }

    #[test]
    fn days_are_named_one_by_one_or_in_groups() {
        assert_eq!(Days::parse("weekdays"), Some(Days(0x1f)));
        assert_eq!(Days::parse("sun"), Some(Days(0x40)));
        assert_eq!(Days::parse("mun"), None);
        assert_eq!(Days(0b101_0101).to_string(), "mon, wed, fri, sun");
        assert_eq!(Days::WEEKENDS.to_string(), "weekends");
    }
}
