use std::fmt;
use std::str::FromStr;

/// One of the 14 ChestX-ray14 findings, or `No Finding`.
///
/// The discriminant order is the order of the NIH release and of every CSV chestx writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum Finding {
    Atelectasis,
    Cardiomegaly,
    Effusion,
    Infiltration,
    Mass,
    Nodule,
    Pneumonia,
    Pneumothorax,
    Consolidation,
    Edema,
    Emphysema,
    Fibrosis,
    #[serde(rename = "Pleural_Thickening")]
    PleuralThickening,
    Hernia,
    #[serde(rename = "No Finding")]
    NoFinding,
}

impl Finding {
    /// The 14 disease findings, without `No Finding`.
    pub const DISEASES: [Finding; 14] = [
        Finding::Atelectasis,
        Finding::Cardiomegaly,
        Finding::Effusion,
        Finding::Infiltration,
        Finding::Mass,
        Finding::Nodule,
        Finding::Pneumonia,
        Finding::Pneumothorax,
        Finding::Consolidation,
        Finding::Edema,
        Finding::Emphysema,
        Finding::Fibrosis,
        Finding::PleuralThickening,
        Finding::Hernia,
    ];

    /// All 15 columns: the 14 diseases then `No Finding`.
    pub const ALL: [Finding; 15] = [
        Finding::Atelectasis,
        Finding::Cardiomegaly,
        Finding::Effusion,
        Finding::Infiltration,
        Finding::Mass,
        Finding::Nodule,
        Finding::Pneumonia,
        Finding::Pneumothorax,
        Finding::Consolidation,
        Finding::Edema,
        Finding::Emphysema,
        Finding::Fibrosis,
        Finding::PleuralThickening,
        Finding::Hernia,
        Finding::NoFinding,
    ];

    /// Column index in [`Finding::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parse an NIH `Finding Labels` cell ("Cardiomegaly|Emphysema", "No Finding") into one flag per
    /// column of [`Finding::ALL`].
    pub fn parse_labels(cell: &str) -> Result<[bool; 15], ParseFindingError> {
        let mut row = [false; 15];
        for name in cell.split('|').map(str::trim).filter(|s| !s.is_empty()) {
            row[name.parse::<Finding>()?.index()] = true;
        }
        Ok(row)
    }

    /// The name used in NIH CSV files (`Pleural_Thickening`, `No Finding`).
    pub fn name(self) -> &'static str {
        match self {
            Finding::Atelectasis => "Atelectasis",
            Finding::Cardiomegaly => "Cardiomegaly",
            Finding::Effusion => "Effusion",
            Finding::Infiltration => "Infiltration",
            Finding::Mass => "Mass",
            Finding::Nodule => "Nodule",
            Finding::Pneumonia => "Pneumonia",
            Finding::Pneumothorax => "Pneumothorax",
            Finding::Consolidation => "Consolidation",
            Finding::Edema => "Edema",
            Finding::Emphysema => "Emphysema",
            Finding::Fibrosis => "Fibrosis",
            Finding::PleuralThickening => "Pleural_Thickening",
            Finding::Hernia => "Hernia",
            Finding::NoFinding => "No Finding",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the 15 findings or their aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFindingError(pub String);

impl fmt::Display for ParseFindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown finding name {:?}", self.0)
    }
}

impl std::error::Error for ParseFindingError {}

impl FromStr for Finding {
    type Err = ParseFindingError;

    /// Accepts the NIH names case-insensitively, with spaces, underscores or hyphens, and the aliases
    /// found in released files: `Infiltrate` (BBox_List_2017), `Pleural Effusion` (CheXpert),
    /// `normal` (OpenI gold).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect();
        let finding = match key.as_str() {
            "atelectasis" => Finding::Atelectasis,
            "cardiomegaly" => Finding::Cardiomegaly,
            "effusion" | "pleuraleffusion" => Finding::Effusion,
            "infiltration" | "infiltrate" | "infiltrates" => Finding::Infiltration,
            "mass" => Finding::Mass,
            "nodule" => Finding::Nodule,
            "pneumonia" => Finding::Pneumonia,
            "pneumothorax" => Finding::Pneumothorax,
            "consolidation" => Finding::Consolidation,
            "edema" => Finding::Edema,
            "emphysema" => Finding::Emphysema,
            "fibrosis" => Finding::Fibrosis,
            "pleuralthickening" => Finding::PleuralThickening,
            "hernia" => Finding::Hernia,
            "nofinding" | "normal" => Finding::NoFinding,
            _ => return Err(ParseFindingError(s.to_string())),
        };
        Ok(finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matches_the_nih_release() {
        for (i, f) in Finding::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        assert_eq!(Finding::ALL[..14], Finding::DISEASES);
    }

    #[test]
    fn parses_names_and_released_aliases() {
        for f in Finding::ALL {
            assert_eq!(f.name().parse::<Finding>(), Ok(f));
        }
        assert_eq!("Infiltrate".parse(), Ok(Finding::Infiltration));
        assert_eq!("pleural thickening".parse(), Ok(Finding::PleuralThickening));
        assert_eq!("Pleural Effusion".parse(), Ok(Finding::Effusion));
        assert_eq!("normal".parse(), Ok(Finding::NoFinding));
        assert!("Fracture".parse::<Finding>().is_err());
    }
}
