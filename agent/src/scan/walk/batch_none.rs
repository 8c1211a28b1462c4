//! Windows: no shared stat batches. A directory's listing already carries
//! every entry's size, time and id, so nothing is left to stat; this type
//! has no value, and the queue's `Help` work never occurs.

use std::marker::PhantomData;

pub(crate) enum StatBatch<'a> {
    #[allow(dead_code)]
    Never(std::convert::Infallible, PhantomData<&'a ()>),
}

impl StatBatch<'_> {
    pub fn work(&self) {
        match *self {
            StatBatch::Never(never, _) => match never {},
        }
    }

    pub fn taken(&self) -> bool {
        match *self {
            StatBatch::Never(never, _) => match never {},
        }
    }
}
