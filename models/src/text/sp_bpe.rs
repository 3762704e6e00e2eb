//! The BPE segmentation of sentencepiece (google/sentencepiece `src/bpe_model.cc`,
//! `bpe::Model::SampleEncode` with `alpha = 0`), on an already normalised string.
//!
//! The input is split into characters (user-defined pieces are single frozen symbols);
//! adjacent pairs whose concatenation is a vocabulary piece go to an agenda ordered by piece
//! score (higher first, then leftmost); merges run until the agenda is empty; merged pieces
//! of type UNUSED are split back along the merges that built them. No deviation (no
//! BPE-dropout).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::sentencepiece::SentencePieceModel;

/// A symbol: a byte range of the normalised input, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    freeze: bool,
    start: usize,
    len: usize,
}

/// A candidate merge of `left` and `right` into a piece of `size` bytes.
#[derive(Debug)]
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pair {
    /// Max-heap order: higher score first, then the smaller `left`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

struct Merger<'a, 'm> {
    model: &'m SentencePieceModel,
    text: &'a str,
    symbols: Vec<Symbol>,
    agenda: BinaryHeap<Pair>,
    rev_merge: HashMap<&'a str, (&'a str, &'a str)>,
}

impl<'a> Merger<'a, '_> {
    fn piece(&self, i: usize) -> &'a str {
        let s = self.symbols[i];
        &self.text[s.start..s.start + s.len]
    }

    fn maybe_add_pair(&mut self, left: Option<usize>, right: Option<usize>) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (self.symbols[left], self.symbols[right]);
        if l.freeze || r.freeze {
            return;
        }
        let merged = &self.text[l.start..l.start + l.len + r.len];
        let Some(id) = self.model.normal_piece_id(merged) else {
            return;
        };
        self.agenda.push(Pair {
            score: self.model.score(id),
            left,
            right,
            size: merged.len(),
        });
        if self.model.is_unused(id) {
            let (lp, rp) = (self.piece(left), self.piece(right));
            self.rev_merge.insert(merged, (lp, rp));
        }
    }

    fn run(&mut self) {
        for i in 1..self.symbols.len() {
            self.maybe_add_pair(Some(i - 1), Some(i));
        }
        while let Some(top) = self.agenda.pop() {
            let (l, r) = (self.symbols[top.left], self.symbols[top.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != top.size {
                continue; // stale entry
            }
            self.symbols[top.left].len += r.len;
            self.symbols[top.left].next = r.next;
            if let Some(n) = r.next {
                self.symbols[n].prev = Some(top.left);
            }
            self.symbols[top.right].len = 0;
            self.maybe_add_pair(self.symbols[top.left].prev, Some(top.left));
            self.maybe_add_pair(Some(top.left), self.symbols[top.left].next);
        }
    }

    fn resegment(&self, w: &'a str, out: &mut Vec<(&'a str, u32)>) {
        let id = self.model.piece_to_id(w);
        if !self.model.is_unused(id) {
            out.push((w, id));
            return;
        }
        match self.rev_merge.get(w) {
            Some(&(l, r)) => {
                self.resegment(l, out);
                self.resegment(r, out);
            }
            None => out.push((w, id)),
        }
    }
}

/// Segments `normalized` into `(piece, id)`; characters outside the vocabulary come out
/// as single-character pieces with the unknown id.
pub(crate) fn encode<'a>(model: &SentencePieceModel, normalized: &'a str) -> Vec<(&'a str, u32)> {
    let mut symbols = Vec::with_capacity(normalized.len());
    let mut pos = 0;
    while pos < normalized.len() {
        let (len, freeze) = model.prefix_match(&normalized[pos..]);
        let index = symbols.len();
        let next = (pos + len < normalized.len()).then_some(index + 1);
        symbols.push(Symbol {
            prev: index.checked_sub(1),
            next,
            freeze,
            start: pos,
            len,
        });
        pos += len;
    }
    if symbols.is_empty() {
        return Vec::new();
    }
    let mut merger = Merger {
        model,
        text: normalized,
        symbols,
        agenda: BinaryHeap::new(),
        rev_merge: HashMap::new(),
    };
    merger.run();
    let mut out = Vec::new();
    let mut index = Some(0);
    while let Some(i) = index {
        merger.resegment(merger.piece(i), &mut out);
        index = merger.symbols[i].next;
    }
    out
}
