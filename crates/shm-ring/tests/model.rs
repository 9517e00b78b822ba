//! Property test: random sequences of send / reserve / commit / abort / recv / recv_batch /
//! flush on one process, for both ring kinds, over many capacities and message sizes, checked
//! against a simple model: every committed message arrives exactly once, in order (claim order),
//! aborted ones never, and no call hangs or leaves the ring full for ever.

use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;
use shm_core::Region;
use shm_ring::{mpsc, spsc, RingConfig, TryRecvError, TrySendError};

#[derive(Clone, Debug)]
enum Op {
    /// `try_send` from producer `p` of a message of `len` bytes.
    Send {
        p: usize,
        len: usize,
    },
    /// `reserve` on producer `p` (if it holds no grant), filled with the message.
    Reserve {
        p: usize,
        len: usize,
    },
    /// Commit producer `p`'s grant, if it holds one.
    Commit {
        p: usize,
    },
    /// Drop producer `p`'s grant, if it holds one.
    Abort {
        p: usize,
    },
    Recv,
    RecvBatch {
        max: usize,
    },
    Flush,
}

/// What the ring holds, in claim order.
#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Pending { p: usize, msg: Vec<u8> },
    Committed(Vec<u8>),
    Aborted,
}

#[derive(Default, Debug)]
struct Model {
    entries: VecDeque<Entry>,
    next_id: u32,
}

impl Model {
    /// A message of `len` bytes that no other message of this run equals (when `len >= 4`).
    fn message(&mut self, len: usize) -> Vec<u8> {
        self.next_id += 1;
        let id = self.next_id.to_le_bytes();
        (0..len).map(|i| if i < 4 { id[i] } else { (i as u32 ^ self.next_id) as u8 }).collect()
    }

    /// The next message a receive must return, or None when it must report empty.
    fn pop(&mut self) -> Option<Vec<u8>> {
        while self.entries.front() == Some(&Entry::Aborted) {
            self.entries.pop_front();
        }
        match self.entries.front() {
            Some(Entry::Committed(_)) => match self.entries.pop_front() {
                Some(Entry::Committed(m)) => Some(m),
                _ => unreachable!(),
            },
            _ => None,
        }
    }

    fn resolve(&mut self, p: usize, commit: bool) {
        let e =
            self.entries.iter_mut().find(|e| matches!(e, Entry::Pending { p: q, .. } if *q == p)).unwrap();
        *e = match std::mem::replace(e, Entry::Aborted) {
            Entry::Pending { msg, .. } if commit => Entry::Committed(msg),
            _ => Entry::Aborted,
        };
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn ops(max_len: usize, producers: usize) -> impl Strategy<Value = Vec<Op>> {
    // Lengths whose records divide the capacity (8, 16, 32 bytes) often, so rings fill exactly.
    let len = prop_oneof![Just(0usize), Just(8), Just(24), 0..=max_len];
    let len = len.prop_map(move |l| l.min(max_len));
    let p = 0..producers;
    let op = prop_oneof![
        4 => (p.clone(), len.clone()).prop_map(|(p, len)| Op::Send { p, len }),
        3 => (p.clone(), len).prop_map(|(p, len)| Op::Reserve { p, len }),
        2 => p.clone().prop_map(|p| Op::Commit { p }),
        2 => p.prop_map(|p| Op::Abort { p }),
        4 => Just(Op::Recv),
        1 => (1usize..6).prop_map(|max| Op::RecvBatch { max }),
        1 => Just(Op::Flush),
    ];
    proptest::collection::vec(op, 1..200)
}

fn geometry() -> impl Strategy<Value = (u64, usize)> {
    (6u32..=12).prop_flat_map(|shift| {
        let cap = 1u64 << shift;
        let limit = (cap / 2 - 8) as usize;
        (Just(cap), prop_oneof![Just(limit), 1..=limit])
    })
}

/// The two ring kinds behind one small interface for the model run: `producers` ends, each of
/// which may hold one grant; a grant is kept as an index so no borrow outlives an operation.
trait Rig {
    fn try_send(&mut self, p: usize, msg: Vec<u8>) -> Result<(), TrySendError<Vec<u8>>>;
    /// Reserve and fill a grant for `msg` on producer `p`, kept open.
    fn reserve(&mut self, p: usize, msg: &[u8]) -> Result<(), TrySendError<()>>;
    fn finish(&mut self, p: usize, commit: bool);
    fn holds_grant(&self, p: usize) -> bool;
    fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError>;
    fn recv_batch(&mut self, max: usize) -> (Result<usize, TryRecvError>, Vec<Vec<u8>>);
    fn flush(&mut self);
}

/// Leaked producers reached through raw pointers, so that a grant (which borrows its producer)
/// can be held across operations. A producer is only used while it holds no grant.
struct Ends<P: 'static, G: 'static> {
    producers: Vec<*mut P>,
    grants: Vec<Option<G>>,
}

impl<P, G> Ends<P, G> {
    fn new(ps: Vec<P>) -> Self {
        let grants = ps.iter().map(|_| None).collect();
        Ends { producers: ps.into_iter().map(|p| Box::into_raw(Box::new(p))).collect(), grants }
    }

    /// Producer `p`, which holds no grant.
    fn producer(&mut self, p: usize) -> &'static mut P {
        assert!(self.grants[p].is_none());
        // SAFETY: the pointer came from Box::into_raw and is freed only in Drop, after every
        // grant; no other reference to this producer is live (its grant slot is empty and
        // every earlier borrow ended with its operation or its grant).
        unsafe { &mut *self.producers[p] }
    }
}

impl<P, G> Drop for Ends<P, G> {
    fn drop(&mut self) {
        self.grants.clear();
        for &p in &self.producers {
            // SAFETY: from Box::into_raw in `new`; the grants borrowing it are gone.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

struct MpscRig {
    ends: Ends<mpsc::Producer, mpsc::Grant<'static>>,
    c: mpsc::Consumer,
}

struct SpscRig {
    ends: Ends<spsc::Producer, spsc::Grant<'static>>,
    c: spsc::Consumer,
}

macro_rules! rig_impl {
    ($rig:ty) => {
        impl Rig for $rig {
            fn try_send(&mut self, p: usize, msg: Vec<u8>) -> Result<(), TrySendError<Vec<u8>>> {
                self.ends.producer(p).try_send(msg)
            }
            fn reserve(&mut self, p: usize, msg: &[u8]) -> Result<(), TrySendError<()>> {
                let mut g = self.ends.producer(p).try_reserve(msg.len())?;
                g.copy_from_slice(msg);
                self.ends.grants[p] = Some(g);
                Ok(())
            }
            fn finish(&mut self, p: usize, commit: bool) {
                let g = self.ends.grants[p].take().expect("a grant");
                if commit {
                    g.commit();
                }
            }
            fn holds_grant(&self, p: usize) -> bool {
                self.ends.grants[p].is_some()
            }
            fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError> {
                let mut buf = Vec::new();
                self.c.try_recv(&mut buf).map(|_| buf)
            }
            fn recv_batch(&mut self, max: usize) -> (Result<usize, TryRecvError>, Vec<Vec<u8>>) {
                let mut got = Vec::new();
                let r = self.c.recv_batch(max, |m| got.push(m.to_vec()));
                (r, got)
            }
            fn flush(&mut self) {
                self.c.flush()
            }
        }
    };
}
rig_impl!(MpscRig);
rig_impl!(SpscRig);

fn run(rig: &mut dyn Rig, producers: usize, max_len: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Send { p, len } if !rig.holds_grant(p % producers) => {
                let msg = model.message(len);
                match rig.try_send(p % producers, msg.clone()) {
                    Ok(()) => model.entries.push_back(Entry::Committed(msg)),
                    Err(TrySendError::Full(back)) => {
                        prop_assert_eq!(back, msg, "the message is handed back");
                        if model.is_empty() {
                            // Nothing in flight: once the consumer hands back, there is room.
                            rig.flush();
                            let again = model.message(len);
                            prop_assert!(
                                rig.try_send(p % producers, again.clone()).is_ok(),
                                "full while empty"
                            );
                            model.entries.push_back(Entry::Committed(again));
                        }
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("send: {e}"))),
                }
            }
            Op::Reserve { p, len } if !rig.holds_grant(p % producers) => {
                let msg = model.message(len);
                match rig.reserve(p % producers, &msg) {
                    Ok(()) => model.entries.push_back(Entry::Pending { p: p % producers, msg }),
                    Err(TrySendError::Full(())) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("reserve: {e}"))),
                }
            }
            Op::Commit { p } | Op::Abort { p } if rig.holds_grant(p % producers) => {
                let commit = matches!(op, Op::Commit { .. });
                rig.finish(p % producers, commit);
                model.resolve(p % producers, commit);
            }
            Op::Recv => match model.pop() {
                Some(want) => prop_assert_eq!(rig.try_recv(), Ok(want)),
                None => prop_assert_eq!(rig.try_recv(), Err(TryRecvError::Empty)),
            },
            Op::RecvBatch { max } => {
                let mut want = Vec::new();
                while want.len() < max {
                    match model.pop() {
                        Some(m) => want.push(m),
                        None => break,
                    }
                }
                let (r, got) = rig.recv_batch(max);
                if want.is_empty() {
                    prop_assert_eq!(r, Err(TryRecvError::Empty));
                } else {
                    prop_assert_eq!(r, Ok(want.len()));
                }
                prop_assert_eq!(got, want);
            }
            Op::Flush => rig.flush(),
            _ => {}
        }
    }
    // Settle every grant (aborting what is still open), then drain.
    for p in 0..producers {
        if rig.holds_grant(p) {
            rig.finish(p, false);
            model.resolve(p, false);
        }
    }
    while let Some(want) = model.pop() {
        prop_assert_eq!(rig.try_recv(), Ok(want));
    }
    prop_assert!(model.is_empty(), "entries left: {:?}", model.entries);
    prop_assert_eq!(rig.try_recv(), Err(TryRecvError::Empty));
    for p in 0..producers {
        let msg = model.message(max_len);
        prop_assert!(rig.try_send(p, msg.clone()).is_ok(), "a drained ring has room for a largest message");
        prop_assert_eq!(rig.try_recv(), Ok(msg));
    }
    prop_assert_eq!(rig.try_recv(), Err(TryRecvError::Empty));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mpsc_matches_the_model(((cap, max_len), producers, ops) in geometry().prop_flat_map(|g| {
        (Just(g), 1usize..=3, ops(g.1, 3))
    })) {
        let config = RingConfig::mpsc(cap, producers as u32).max_message(max_len as u64);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let c = mpsc::Consumer::create(region.clone(), &config).unwrap();
        let ps = (0..producers).map(|_| mpsc::Producer::open(region.clone()).unwrap()).collect();
        let mut rig = MpscRig { ends: Ends::new(ps), c };
        run(&mut rig, producers, max_len, ops)?;
    }

    #[test]
    fn spsc_matches_the_model(((cap, max_len), ops) in geometry().prop_flat_map(|g| (Just(g), ops(g.1, 1)))) {
        let config = RingConfig::spsc(cap).max_message(max_len as u64);
        let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
        let p = spsc::Producer::create(region.clone(), &config).unwrap();
        let c = spsc::Consumer::open(region).unwrap();
        let mut rig = SpscRig { ends: Ends::new(vec![p]), c };
        run(&mut rig, 1, max_len, ops)?;
    }
}
