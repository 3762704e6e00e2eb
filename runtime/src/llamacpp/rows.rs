//! Bookkeeping of batch rows as llama.cpp sequence ids: which sequence holds each row,
//! the next position of each, and the sequence operations that reorder them.

use anyhow::{bail, Result};

/// One KV-cache operation of a reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqOp {
    /// Drop every cell of the sequence.
    Remove(i32),
    /// Make `dst` share every cell of `src` (metadata only in a unified cache).
    Copy {
        /// Source sequence.
        src: i32,
        /// Destination sequence (empty before).
        dst: i32,
    },
}

/// The rows of the current batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    /// Sequence id of each row.
    pub seq: Vec<i32>,
    /// Next position (count of real tokens so far) of each row.
    pub pos: Vec<i32>,
}

impl Rows {
    /// `n` fresh rows on sequences `0..n`.
    pub fn fresh(n: usize, n_seq_max: usize) -> Result<Self> {
        if n > n_seq_max {
            bail!("a batch of {n} rows is more than the {n_seq_max} sequences the llama.cpp context holds");
        }
        Ok(Rows {
            seq: (0..n as i32).collect(),
            pos: vec![0; n],
        })
    }

    /// The operations that make new row `i` = old row `rows[i]`, and the rows after them.
    /// The first new row taking an old row keeps its sequence; later duplicates are
    /// copied into free sequence ids; old rows no one takes are removed first.
    pub fn plan_reorder(&self, rows: &[usize], n_seq_max: usize) -> Result<(Vec<SeqOp>, Rows)> {
        let n_old = self.seq.len();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n_old) {
            bail!("reorder asks for row {bad} of a batch of {n_old}");
        }
        if rows.len() > n_seq_max {
            bail!(
                "{} rows are more than the {n_seq_max} sequences the llama.cpp context holds",
                rows.len()
            );
        }
        let mut taken = vec![false; n_old];
        let mut new_seq: Vec<Option<i32>> = vec![None; rows.len()];
        for (i, &r) in rows.iter().enumerate() {
            if !taken[r] {
                taken[r] = true;
                new_seq[i] = Some(self.seq[r]);
            }
        }
        let mut ops: Vec<SeqOp> = (0..n_old)
            .filter(|&r| !taken[r])
            .map(|r| SeqOp::Remove(self.seq[r]))
            .collect();
        let mut used: Vec<bool> = vec![false; n_seq_max];
        for s in new_seq.iter().flatten() {
            if let Some(u) = used.get_mut(*s as usize) {
                *u = true;
            }
        }
        let mut next_free = 0usize;
        for (i, &r) in rows.iter().enumerate() {
            if new_seq[i].is_some() {
                continue;
            }
            while used.get(next_free).copied().unwrap_or(false) {
                next_free += 1;
            }
            if next_free >= n_seq_max {
                bail!("no free llama.cpp sequence left for a reorder");
            }
            used[next_free] = true;
            let dst = next_free as i32;
            ops.push(SeqOp::Copy {
                src: self.seq[r],
                dst,
            });
            new_seq[i] = Some(dst);
        }
        let seq = new_seq.into_iter().flatten().collect();
        let pos = rows.iter().map(|&r| self.pos[r]).collect();
        Ok((ops, Rows { seq, pos }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apply(cells: &mut [Vec<i32>], ops: &[SeqOp]) {
        // `cells[s]` = the tokens held by sequence s (a model of llama.cpp's cache).
        for op in ops {
            match *op {
                SeqOp::Remove(s) => cells[s as usize].clear(),
                SeqOp::Copy { src, dst } => {
                    assert!(cells[dst as usize].is_empty(), "copy into a live sequence");
                    cells[dst as usize] = cells[src as usize].clone();
                }
            }
        }
    }

    #[test]
    fn reorder_keeps_duplicates_and_drops_the_rest() {
        let n_max = 8;
        let mut rows = Rows::fresh(3, n_max).unwrap();
        rows.pos = vec![5, 6, 7];
        let mut cells: Vec<Vec<i32>> = vec![vec![]; n_max];
        for (i, s) in rows.seq.iter().enumerate() {
            cells[*s as usize] = vec![i as i32 * 100];
        }
        let order = [2, 2, 0, 2];
        let (ops, new) = rows.plan_reorder(&order, n_max).unwrap();
        apply(&mut cells, &ops);
        for (i, &r) in order.iter().enumerate() {
            assert_eq!(cells[new.seq[i] as usize], vec![r as i32 * 100]);
            assert_eq!(new.pos[i], rows.pos[r]);
        }
        // Row 1 was taken by no one: its sequence is empty now.
        assert!(ops.contains(&SeqOp::Remove(1)));
        let mut seqs = new.seq.clone();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), order.len(), "every row has its own sequence");
    }

    #[test]
    fn identity_is_free_and_limits_are_errors() {
        let rows = Rows::fresh(4, 4).unwrap();
        let (ops, new) = rows.plan_reorder(&[0, 1, 2, 3], 4).unwrap();
        assert!(ops.is_empty());
        assert_eq!(new, rows);
        assert!(rows.plan_reorder(&[4], 4).is_err());
        assert!(rows.plan_reorder(&[0, 0, 0, 0, 0], 4).is_err());
        assert!(Rows::fresh(5, 4).is_err());
    }
}
