//! Tile and entry-bundle paths as C2SP tlog-tiles names them: `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, where `<N>` is the index in groups of three digits, every group
//! but the last prefixed with `x` (1234067 is `x001/x234/067`), and `.p/<W>` names a partial
//! tile of `W` (1 to 255) hashes or entries.

/// Hashes (or entries) in a full tile.
pub const WIDTH: u64 = 256;

/// Merkle levels one tile spans.
pub const HEIGHT: u32 = 8;

/// The highest tile level a 64-bit tree size reaches.
const MAX_LEVEL: u32 = 63 / HEIGHT;

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    /// The hashes at Merkle level `8 × level`, from `index × 256` on.
    Hashes { level: u32, index: u64, width: u64 },
    /// Entries `index × 256` on.
    Entries { index: u64, width: u64 },
}

impl Tile {
    pub fn width(&self) -> u64 {
        match self {
            Tile::Hashes { width, .. } | Tile::Entries { width, .. } => *width,
        }
    }

    pub fn index(&self) -> u64 {
        match self {
            Tile::Hashes { index, .. } | Tile::Entries { index, .. } => *index,
        }
    }

    /// Whether it holds fewer than 256 hashes or entries.
    pub fn is_partial(&self) -> bool {
        self.width() < WIDTH
    }

    /// The same tile, full.
    pub fn full(self) -> Tile {
        match self {
            Tile::Hashes { level, index, .. } => Tile::Hashes {
                level,
                index,
                width: WIDTH,
            },
            Tile::Entries { index, .. } => Tile::Entries {
                index,
                width: WIDTH,
            },
        }
    }

    /// Its path, relative to the log's root.
    pub fn path(&self) -> String {
        let level = match self {
            Tile::Hashes { level, .. } => level.to_string(),
            Tile::Entries { .. } => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", index_path(self.index()));
        if self.is_partial() {
            path.push_str(&format!(".p/{}", self.width()));
        }
        path
    }

    /// Parses a path relative to the log's root; `None` for anything the specification does
    /// not name (no leading zeros beyond the three digits, no width 0 or past 255).
    pub fn parse(path: &str) -> Option<Tile> {
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => (index, parse_width(width)?),
            None => (rest, WIDTH),
        };
        let index = parse_index(index)?;
        match level {
            "entries" => Some(Tile::Entries { index, width }),
            level => {
                let level = parse_decimal(level)?;
                let level = u32::try_from(level).ok().filter(|l| *l <= MAX_LEVEL)?;
                Some(Tile::Hashes {
                    level,
                    index,
                    width,
                })
            }
        }
    }
}

/// `1234067` → `x001/x234/067`.
fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, group)| {
            if i == last {
                format!("{group:03}")
            } else {
                format!("x{group:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn parse_index(text: &str) -> Option<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    let (last, leading) = groups.split_last()?;
    // 64-bit indexes need at most seven groups.
    if groups.len() > 7 {
        return None;
    }
    let mut index: u64 = 0;
    for group in leading {
        index = index
            .checked_mul(1000)?
            .checked_add(three_digits(group.strip_prefix('x')?)?)?;
    }
    let index = index.checked_mul(1000)?.checked_add(three_digits(last)?)?;
    // The canonical form has no leading `x000` group.
    (index_path(index) == text).then_some(index)
}

fn three_digits(text: &str) -> Option<u64> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_width(text: &str) -> Option<u64> {
    parse_decimal(text).filter(|w| (1..WIDTH).contains(w))
}

/// How many hashes of Merkle level `8 × level` a tree of `size` leaves has.
pub fn hashes_at(size: u64, level: u32) -> u64 {
    size.checked_shr(HEIGHT * level).unwrap_or(0)
}

/// The widths of tile `index` at `level` in a tree of `size` leaves (0: it has none yet).
pub fn width_in(size: u64, level: u32, index: u64) -> u64 {
    hashes_at(size, level)
        .saturating_sub(index.saturating_mul(WIDTH))
        .min(WIDTH)
}

/// Where the perfect subtree of `2^level` leaves that starts at leaf `index << level` lies in a
/// tree of `size` leaves: the hash tile that holds it (at its width in that tree), and the span
/// of that tile's hashes it is the root over. `None` when the tree does not hold all of it.
pub fn locate(size: u64, level: u32, index: u64) -> Option<(Tile, std::ops::Range<usize>)> {
    let tile_level = level / HEIGHT;
    let within = level % HEIGHT;
    let first = index.checked_shl(within)?;
    let count = 1u64 << within;
    if first.checked_add(count)? > hashes_at(size, tile_level) {
        return None;
    }
    let tile_index = first / WIDTH;
    let tile = Tile::Hashes {
        level: tile_level,
        index: tile_index,
        width: width_in(size, tile_level, tile_index),
    };
    // Both below 256: `first % WIDTH + count` is at most a tile.
    let start = (first % WIDTH) as usize;
    Some((tile, start..start + count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_specifications() {
        let cases = [
            (
                Tile::Hashes {
                    level: 0,
                    index: 1_234_067,
                    width: WIDTH,
                },
                "tile/0/x001/x234/067",
            ),
            (
                Tile::Hashes {
                    level: 1,
                    index: 0,
                    width: 9,
                },
                "tile/1/000.p/9",
            ),
            (
                Tile::Entries {
                    index: 1000,
                    width: 255,
                },
                "tile/entries/x001/000.p/255",
            ),
            (
                Tile::Entries {
                    index: 999,
                    width: WIDTH,
                },
                "tile/entries/999",
            ),
        ];
        for (tile, path) in cases {
            assert_eq!(tile.path(), path);
            assert_eq!(Tile::parse(path), Some(tile), "{path}");
        }
        let big = Tile::Hashes {
            level: 7,
            index: u64::MAX,
            width: 1,
        };
        assert_eq!(Tile::parse(&big.path()), Some(big));
    }

    #[test]
    fn paths_the_specification_does_not_name_are_refused() {
        for path in [
            "",
            "tile/",
            "tile/0/",
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001/x002",
            "tile/00/001",
            "tile/8/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/07",
            "tile/entries/001.p/",
            "tile/data/001",
            "tile/0/x1/001",
            "tile/0/x020/x000/x000/x000/x000/x000/x000/000",
            "tile/0/../001",
            "checkpoint",
        ] {
            assert_eq!(Tile::parse(path), None, "{path:?}");
        }
    }

    #[test]
    fn widths_follow_the_tree_size() {
        assert_eq!(width_in(0, 0, 0), 0);
        assert_eq!(width_in(1, 0, 0), 1);
        assert_eq!(width_in(256, 0, 0), 256);
        assert_eq!(width_in(257, 0, 1), 1);
        assert_eq!(width_in(257, 1, 0), 1);
        assert_eq!(width_in(65_536 * 3 + 5, 1, 0), 256);
        assert_eq!(width_in(65_536 * 3 + 5, 1, 1), 256);
        assert_eq!(width_in(65_536 * 3 + 5, 1, 3), 0);
        assert_eq!(width_in(65_536 * 3 + 5, 2, 0), 3);
        assert_eq!(width_in(u64::MAX, 7, 0), 255);
    }
}
