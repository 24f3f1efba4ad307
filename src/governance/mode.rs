//! DRAG mode: how much the AI may do in a run.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The AI's responsibility level for one run. `analysis` is human-only and therefore has no variant:
/// a `DragMode` that exists is always one the AI may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DragMode {
    Draft,
    Research,
    Grunt,
    Execute,
}

impl DragMode {
    pub const ALL: [DragMode; 4] = [
        DragMode::Draft,
        DragMode::Research,
        DragMode::Grunt,
        DragMode::Execute,
    ];

    /// The wire form, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            DragMode::Draft => "draft",
            DragMode::Research => "research",
            DragMode::Grunt => "grunt",
            DragMode::Execute => "execute",
        }
    }

    /// Whether AI output in this mode must be free of prescriptive language. Draft and research present
    /// options, never decisions; grunt and execute are directive by nature (as the original).
    pub fn forbids_prescriptive_language(self) -> bool {
        matches!(self, DragMode::Draft | DragMode::Research)
    }
}

/// Why a string is not a DRAG mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DragModeError {
    #[error("Invalid DRAG mode. Analysis is human-only.")]
    HumanOnly,
    #[error("unknown DRAG mode '{0}' (expected one of draft, research, grunt, execute)")]
    Unknown(String),
}

impl FromStr for DragMode {
    type Err = DragModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "draft" => Ok(DragMode::Draft),
            "research" => Ok(DragMode::Research),
            "grunt" => Ok(DragMode::Grunt),
            "execute" => Ok(DragMode::Execute),
            "analysis" => Err(DragModeError::HumanOnly),
            other => Err(DragModeError::Unknown(other.to_owned())),
        }
    }
}

impl fmt::Display for DragMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DragMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_ai_modes_in_lower_case_only() {
        for mode in DragMode::ALL {
            assert_eq!(mode.as_str().parse::<DragMode>(), Ok(mode));
        }
        assert!("EXECUTE".parse::<DragMode>().is_err());
    }

    #[test]
    fn refuses_analysis_as_human_only() {
        assert_eq!(
            "analysis".parse::<DragMode>(),
            Err(DragModeError::HumanOnly)
        );
    }
}
