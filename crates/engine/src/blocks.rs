//! Blocks over the flat entry list: where each block's sections begin and end, and where a
//! failure goes.
//!
//! The model flattens blocks at load (each task carries its chain of enclosing blocks), so
//! the host loop keeps expanding and batching one flat list; this finds the ranges. A
//! failure in a block's main part jumps to its `rescue`; without one (or in the rescue) it
//! jumps to its `always`, after which the failure goes on to the enclosing block; with no
//! block left, the host fails.

use bosun_model::site::{Section, Task};
use std::collections::HashSet;
use std::ops::Range;

/// One block of the entry list (a role listed twice has its blocks twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub main: Range<usize>,
    pub rescue: Option<Range<usize>>,
    pub always: Option<Range<usize>>,
}

impl Span {
    /// The first entry after the block.
    pub fn end(&self) -> usize {
        self.always
            .as_ref()
            .or(self.rescue.as_ref())
            .unwrap_or(&self.main)
            .end
    }

    fn section(&mut self, s: Section) -> &mut Option<Range<usize>> {
        match s {
            Section::Rescue => &mut self.rescue,
            _ => &mut self.always,
        }
    }
}

/// A block whose `always` runs after a failure that goes on once it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub span: usize,
    /// Where the failure goes next: the chain outside the block.
    pub outer: Vec<(usize, Section)>,
}

/// The blocks of an entry list, and each entry's chain of them (outermost first).
#[derive(Debug, Default)]
pub struct Blocks {
    pub spans: Vec<Span>,
    chains: Vec<Vec<(usize, Section)>>,
}

/// What the host loop does after a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Go on at this entry (a rescue, or an always that runs first).
    Rescue(usize),
    Always(usize),
    /// No block handles it: the host fails.
    Fail,
}

impl Blocks {
    /// `tasks` in entry order, each with whether it follows the one before in the same
    /// file of the same role occurrence (a block never spans two occurrences).
    pub fn new<'t>(tasks: impl IntoIterator<Item = (&'t Task, bool)>) -> Blocks {
        let mut b = Blocks::default();
        let mut prev: Option<&Task> = None;
        for (i, (t, follows)) in tasks.into_iter().enumerate() {
            let mut chain = Vec::with_capacity(t.blocks.len());
            for (d, r) in t.blocks.iter().enumerate() {
                let same = follows
                    && prev
                        .and_then(|p| p.blocks.get(d))
                        .is_some_and(|pr| pr.id == r.id)
                    && chain.len() == d;
                let span = match b.chains.last().and_then(|c| c.get(d)) {
                    Some(&(s, _)) if same => s,
                    _ => {
                        b.spans.push(Span {
                            main: i..i,
                            rescue: None,
                            always: None,
                        });
                        b.spans.len() - 1
                    }
                };
                let sp = &mut b.spans[span];
                if r.section == Section::Main {
                    sp.main.end = i + 1;
                } else {
                    let range = sp.section(r.section);
                    match range {
                        Some(rg) => rg.end = i + 1,
                        None => *range = Some(i..i + 1),
                    }
                }
                chain.push((span, r.section));
            }
            b.chains.push(chain);
            prev = Some(t);
        }
        b
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The chain of entry `i` (empty outside blocks).
    pub fn chain(&self, i: usize) -> &[(usize, Section)] {
        self.chains.get(i).map(Vec::as_slice).unwrap_or_default()
    }

    /// Where the loop goes instead of entry `i`: past a rescue that no failure entered.
    pub fn skip(&self, i: usize, rescuing: &HashSet<usize>) -> Option<usize> {
        self.chain(i).iter().find_map(|&(s, section)| {
            (section == Section::Rescue && !rescuing.contains(&s))
                .then(|| self.spans[s].rescue.as_ref().map(|r| r.end))
                .flatten()
        })
    }

    /// Where a failure with `chain` goes. Entering a rescue is recorded in `rescuing`; a
    /// block whose always runs first is pushed on `failing`; blocks the failure leaves
    /// are taken off it.
    pub fn fail(
        &self,
        mut chain: Vec<(usize, Section)>,
        rescuing: &mut HashSet<usize>,
        failing: &mut Vec<Failing>,
    ) -> AfterFailure {
        while let Some((span, section)) = chain.pop() {
            failing.retain(|f| f.span != span);
            let s = &self.spans[span];
            match (section, &s.rescue, &s.always) {
                (Section::Main, Some(r), _) => {
                    rescuing.insert(span);
                    return AfterFailure::Rescue(r.start);
                }
                (Section::Main | Section::Rescue, _, Some(a)) => {
                    failing.push(Failing { span, outer: chain });
                    return AfterFailure::Always(a.start);
                }
                _ => {}
            }
        }
        AfterFailure::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_model::site::BlockRef;

    fn task(chain: &[(u64, Section)]) -> Task {
        Task {
            name: "t".into(),
            module: "shell".into(),
            loop_var: "item".into(),
            delay: 1,
            role: "r".into(),
            blocks: chain
                .iter()
                .map(|&(id, section)| BlockRef {
                    id,
                    section,
                    name: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    use Section::*;

    /// 0 before; outer(1) main: 1, inner(2) main 2, inner rescue 3; outer always 4; 5 after.
    fn nested() -> Blocks {
        let ts = [
            task(&[]),
            task(&[(1, Main)]),
            task(&[(1, Main), (2, Main)]),
            task(&[(1, Main), (2, Rescue)]),
            task(&[(1, Always)]),
            task(&[]),
        ];
        Blocks::new(ts.iter().map(|t| (t, true)))
    }

    #[test]
    fn spans_of_nested_blocks() {
        let b = nested();
        assert_eq!(
            b.spans,
            vec![
                Span {
                    main: 1..4,
                    rescue: None,
                    always: Some(4..5)
                },
                Span {
                    main: 2..3,
                    rescue: Some(3..4),
                    always: None
                },
            ]
        );
        assert_eq!(b.spans[0].end(), 5);
        assert_eq!(b.chain(3), &[(0, Main), (1, Rescue)]);
        assert!(b.chain(5).is_empty());
    }

    #[test]
    fn a_rescue_nobody_entered_is_skipped() {
        let b = nested();
        let mut rescuing = HashSet::new();
        assert_eq!(b.skip(3, &rescuing), Some(4));
        assert_eq!(b.skip(2, &rescuing), None);
        rescuing.insert(1);
        assert_eq!(b.skip(3, &rescuing), None);
    }

    #[test]
    fn failures_go_to_rescue_then_always_then_out() {
        let b = nested();
        let (mut rescuing, mut failing) = (HashSet::new(), Vec::new());
        // In the inner main: the inner rescue.
        let r = b.fail(b.chain(2).to_vec(), &mut rescuing, &mut failing);
        assert_eq!(r, AfterFailure::Rescue(3));
        // The rescue fails too: no inner always, so the outer always runs, then it fails.
        let r = b.fail(b.chain(3).to_vec(), &mut rescuing, &mut failing);
        assert_eq!(r, AfterFailure::Always(4));
        assert_eq!(
            failing,
            vec![Failing {
                span: 0,
                outer: vec![]
            }]
        );
        let f = failing.pop().unwrap();
        assert_eq!(
            b.fail(f.outer, &mut rescuing, &mut failing),
            AfterFailure::Fail
        );
        // A failure in an always goes straight out.
        assert_eq!(
            b.fail(b.chain(4).to_vec(), &mut rescuing, &mut failing),
            AfterFailure::Fail
        );
    }

    #[test]
    fn a_role_listed_twice_has_its_blocks_twice() {
        let ts = [task(&[(7, Main)]), task(&[(7, Main)])];
        let b = Blocks::new(ts.iter().zip([true, false]));
        assert_eq!(b.spans.len(), 2);
        assert_eq!(b.spans[1].main, 1..2);
    }
}
