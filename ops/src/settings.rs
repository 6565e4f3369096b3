//! How every daemon reads its settings: flags, optionally a YAML file (`--config`)
//! with the same keys in kebab-case, flags winning over the file, defaults last.
//!
//! Each daemon still lists its own file keys, so that its file stays strict (serde's
//! `deny_unknown_fields` does not combine with `flatten`); what they share is here:
//! reading the file, durations as Kubernetes writes them, and leader election.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading --config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--config {}: {source}", path.display())]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("{key} in --config: {message}")]
    Value { key: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The settings file at `path`, or every key unset when there is none.
pub fn read_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, SettingsError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.into(), source })?;
    serde_yaml::from_str(&text).map_err(|source| SettingsError::Parse { path: path.into(), source })
}

/// "15s", "500ms", "2m", "1h", or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration such as 15s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("\"{text}\": unknown unit \"{unit}\" (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("\"{text}\" is out of range"))
}

/// A duration setting: the flag's, else the file's `key`, else `default`.
pub fn duration(
    flag: Option<Duration>,
    file: Option<String>,
    key: &str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    match (flag, file) {
        (Some(value), _) => Ok(value),
        (None, Some(text)) => {
            parse_duration(&text).map_err(|message| SettingsError::Value { key: key.to_string(), message })
        }
        (None, None) => Ok(default),
    }
}

/// The leader election flags of a daemon that runs as several replicas, one acting.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LeaderElectionFlags {
    /// Elect a leader so that only one of several replicas acts [default: true].
    #[arg(long)]
    pub leader_elect: Option<bool>,
    /// How long a leader's Lease lasts without renewal [default: 15s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_lease_duration: Option<Duration>,
    /// How long a leader tries to renew before it stops leading [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Option<Duration>,
    /// How often candidates try to acquire and leaders renew [default: 2s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_retry_period: Option<Duration>,
}

/// The same settings as a daemon's file has them (the keys `leader-elect`,
/// `leader-elect-lease-duration`, `leader-elect-renew-deadline`, `leader-elect-retry-period`).
#[derive(Debug, Clone, Default)]
pub struct LeaderElectionFile {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderElection {
    pub enabled: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionFlags {
    /// Merged with the file and Kubernetes' defaults; the three durations must nest
    /// (retry < renew deadline < lease) or a leader could lose its Lease while renewing.
    pub fn resolve(self, file: LeaderElectionFile) -> Result<LeaderElection, SettingsError> {
        let settings = LeaderElection {
            enabled: self.leader_elect.or(file.leader_elect).unwrap_or(true),
            lease_duration: duration(
                self.leader_elect_lease_duration,
                file.lease_duration,
                "leader-elect-lease-duration",
                Duration::from_secs(15),
            )?,
            renew_deadline: duration(
                self.leader_elect_renew_deadline,
                file.renew_deadline,
                "leader-elect-renew-deadline",
                Duration::from_secs(10),
            )?,
            retry_period: duration(
                self.leader_elect_retry_period,
                file.retry_period,
                "leader-elect-retry-period",
                Duration::from_secs(2),
            )?,
        };
        if settings.renew_deadline >= settings.lease_duration {
            return Err(SettingsError::Invalid(format!(
                "--leader-elect-renew-deadline ({:?}) must be shorter than --leader-elect-lease-duration ({:?})",
                settings.renew_deadline, settings.lease_duration
            )));
        }
        if settings.retry_period >= settings.renew_deadline {
            return Err(SettingsError::Invalid(format!(
                "--leader-elect-retry-period ({:?}) must be shorter than --leader-elect-renew-deadline ({:?})",
                settings.retry_period, settings.renew_deadline
            )));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubernetes_writes_them() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn a_flag_wins_over_the_file_and_a_bad_file_value_names_its_key() {
        let flag = duration(Some(Duration::from_secs(1)), Some("9s".into()), "sync-period", Duration::ZERO);
        assert_eq!(flag.unwrap(), Duration::from_secs(1));
        let file = duration(None, Some("9s".into()), "sync-period", Duration::ZERO);
        assert_eq!(file.unwrap(), Duration::from_secs(9));
        let error = duration(None, Some("soon".into()), "sync-period", Duration::ZERO).unwrap_err().to_string();
        assert!(error.starts_with("sync-period in --config: \"soon\""), "{error}");
    }

    #[test]
    fn leader_election_defaults_and_nesting() {
        let defaults = LeaderElectionFlags::default().resolve(LeaderElectionFile::default()).unwrap();
        assert_eq!(
            defaults,
            LeaderElection {
                enabled: true,
                lease_duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry_period: Duration::from_secs(2),
            }
        );
        let file = LeaderElectionFile { renew_deadline: Some("20s".into()), ..Default::default() };
        let error = LeaderElectionFlags::default().resolve(file).unwrap_err().to_string();
        assert!(error.contains("--leader-elect-renew-deadline (20s) must be shorter"), "{error}");
        let flags =
            LeaderElectionFlags { leader_elect_retry_period: Some(Duration::from_secs(10)), ..Default::default() };
        let error = flags.resolve(LeaderElectionFile::default()).unwrap_err().to_string();
        assert!(error.contains("--leader-elect-retry-period (10s) must be shorter"), "{error}");
    }

    #[test]
    fn a_missing_file_names_its_path_and_unknown_keys_are_refused() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct File {
            #[allow(dead_code)]
            sync_period: Option<String>,
        }
        let dir = std::env::temp_dir().join(format!("ops-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let error = read_file::<File>(Some(&missing)).unwrap_err().to_string();
        assert!(error.starts_with(&format!("reading --config {}", missing.display())), "{error}");
        let typo = dir.join("typo.yaml");
        std::fs::write(&typo, "sync-perod: 5s\n").unwrap();
        let error = read_file::<File>(Some(&typo)).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("unknown field `sync-perod`"), "{error}");
        assert!(read_file::<File>(None).unwrap().sync_period.is_none());
    }
}
