//! How a multipart completion maps the listed API parts onto a backend's native parts
//! (pure arithmetic, no I/O).
//!
//! Parts that went up natively stay as they are. Every run of consecutive staged parts
//! between them becomes one native part, numbered like the run's first part and
//! streamed from staging at completion, so several small parts may together meet the
//! backend's minimum part size. Only the last native part may be smaller than that
//! minimum; a listing that cannot be laid out so is refused with the code S3 itself
//! would answer.

use crate::backend::PartLimits;

/// One listed part, as its record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The API part number.
    pub number: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The backend's etag when the part went up natively; `None` when it is staged.
    pub native_etag: Option<String>,
}

/// One native part of the finished object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A part already uploaded natively.
    Native {
        /// Its number (the API part number).
        number: u32,
        /// The backend's etag for it.
        etag: String,
    },
    /// Staged parts streamed up as one native part at completion.
    Staged {
        /// The native part number: the first member's API part number.
        number: u32,
        /// The API part numbers, in order.
        members: Vec<u32>,
        /// Their total size.
        size: u64,
    },
}

/// Why a listing cannot be assembled natively.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A part other than the last is below the backend's minimum (S3 `EntityTooSmall`).
    #[error("part {number} and the staged parts after it hold {size} bytes; every part but the last must hold at least {min} bytes")]
    TooSmall {
        /// The first API part number of the piece.
        number: u32,
        /// The piece's size.
        size: u64,
        /// The backend's minimum.
        min: u64,
    },
    /// Staged parts beyond what one native part may hold (S3 `EntityTooLarge`).
    #[error("part {number} and the staged parts after it hold {size} bytes; a part may hold at most {max} bytes")]
    TooLarge {
        /// The first API part number of the piece.
        number: u32,
        /// The piece's size.
        size: u64,
        /// The backend's maximum.
        max: u64,
    },
    /// A piece numbered beyond the backend's part numbers (S3 `InvalidArgument`).
    #[error("part number {number} is beyond the largest native part number {max}")]
    NumberTooLarge {
        /// The API part number.
        number: u32,
        /// The backend's largest part number.
        max: u32,
    },
}

impl PlanError {
    /// The S3-style code for the completion document.
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::TooSmall { .. } => "EntityTooSmall",
            PlanError::TooLarge { .. } => "EntityTooLarge",
            PlanError::NumberTooLarge { .. } => "InvalidArgument",
        }
    }
}

/// Lays the listed parts (ascending) out as native parts within `limits`.
pub fn plan(listed: &[Listed], limits: &PartLimits) -> Result<Vec<Piece>, PlanError> {
    let mut pieces: Vec<Piece> = Vec::new();
    for part in listed {
        match (&part.native_etag, pieces.last_mut()) {
            (Some(etag), _) => pieces.push(Piece::Native {
                number: part.number,
                etag: etag.clone(),
            }),
            (None, Some(Piece::Staged { members, size, .. })) => {
                members.push(part.number);
                *size += part.size;
            }
            (None, _) => pieces.push(Piece::Staged {
                number: part.number,
                members: vec![part.number],
                size: part.size,
            }),
        }
    }
    let last = pieces.len().saturating_sub(1);
    for (index, piece) in pieces.iter().enumerate() {
        let (number, size) = match piece {
            Piece::Native { number, .. } => (*number, None),
            Piece::Staged { number, size, .. } => (*number, Some(*size)),
        };
        if number > limits.max_number {
            return Err(PlanError::NumberTooLarge {
                number,
                max: limits.max_number,
            });
        }
        let Some(size) = size else { continue };
        if size > limits.max_size {
            return Err(PlanError::TooLarge {
                number,
                size,
                max: limits.max_size,
            });
        }
        if index != last && size < limits.min_size {
            return Err(PlanError::TooSmall {
                number,
                size,
                min: limits.min_size,
            });
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PartLimits = PartLimits {
        min_size: 100,
        max_size: 1000,
        max_number: 50,
    };

    fn staged(number: u32, size: u64) -> Listed {
        Listed {
            number,
            size,
            native_etag: None,
        }
    }

    fn native(number: u32) -> Listed {
        Listed {
            number,
            size: 500,
            native_etag: Some(format!("n{number}")),
        }
    }

    fn run(number: u32, members: &[u32], size: u64) -> Piece {
        Piece::Staged {
            number,
            members: members.to_vec(),
            size,
        }
    }

    fn up(number: u32) -> Piece {
        Piece::Native {
            number,
            etag: format!("n{number}"),
        }
    }

    #[test]
    fn native_parts_stay_and_staged_runs_join_into_one_part_each() {
        let listed = [
            staged(1, 60),
            staged(2, 40),
            native(3),
            native(7),
            staged(8, 1),
            staged(9, 2),
        ];
        assert_eq!(
            plan(&listed, &LIMITS).unwrap(),
            [run(1, &[1, 2], 100), up(3), up(7), run(8, &[8, 9], 3)]
        );
    }

    #[test]
    fn only_the_last_part_may_be_small() {
        assert_eq!(
            plan(&[staged(1, 99), native(2)], &LIMITS),
            Err(PlanError::TooSmall {
                number: 1,
                size: 99,
                min: 100
            })
        );
        assert_eq!(plan(&[native(1), staged(2, 0)], &LIMITS).unwrap().len(), 2);
        assert_eq!(
            plan(&[staged(4, 3)], &LIMITS).unwrap(),
            [run(4, &[4], 3)],
            "a lone small run is the last part"
        );
        assert_eq!(
            plan(&[staged(1, 99), native(2)], &LIMITS)
                .unwrap_err()
                .code(),
            "EntityTooSmall"
        );
    }

    #[test]
    fn runs_beyond_the_part_size_or_numbers_are_refused() {
        let too_large = plan(&[staged(1, 600), staged(2, 600), native(3)], &LIMITS).unwrap_err();
        assert_eq!(too_large.code(), "EntityTooLarge");
        let beyond = plan(&[native(1), staged(51, 5)], &LIMITS).unwrap_err();
        assert_eq!(
            beyond,
            PlanError::NumberTooLarge {
                number: 51,
                max: 50
            }
        );
        assert_eq!(beyond.code(), "InvalidArgument");
        // A run may extend past the largest number: it is numbered by its first part.
        assert!(plan(&[native(1), staged(50, 5), staged(60, 5)], &LIMITS).is_ok());
    }
}
