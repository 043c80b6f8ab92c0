//! A queue read in groups, for group commit: the first item is waited for, then whatever is
//! already waiting joins it, so one batched operation (one JetStream batch, one append of an IRC
//! publisher's lines) answers every request that queued up while the last one ran. Used by the
//! JetStream writer and the IRC publish pipeline; the SQLite writer keeps its own loop (see
//! `sqlite::writer`).
//!
//! Gathering never waits for more: a group is what has piled up, so a lone request is not slowed
//! down for the sake of a batch.

use tokio::sync::mpsc;

/// The receiving end of a queue, read a group at a time. An item that may not join a group (it
/// does not fit, or does not belong) is held back and starts the next one, so order is kept.
pub struct Groups<T> {
    queue: mpsc::Receiver<T>,
    held: Option<T>,
}

impl<T> Groups<T> {
    pub fn new(queue: mpsc::Receiver<T>) -> Groups<T> {
        Groups { queue, held: None }
    }

    /// The item that starts the next group: the one the last group held back, else the next to
    /// arrive. `None` once the queue is closed and empty.
    pub async fn first(&mut self) -> Option<T> {
        match self.held.take() {
            Some(item) => Some(item),
            None => self.queue.recv().await,
        }
    }

    /// A group: `first`, then the items already waiting while the group's size (the sum of
    /// `size` over its members) is below `max`. Each waiting item is offered to `join` with the
    /// group so far and its size; `join` makes it a member, or gives it back (it would not fit, or
    /// does not belong) to be held for the next group, which ends this one.
    pub fn gather<U>(
        &mut self,
        first: U,
        max: usize,
        size: impl Fn(&U) -> usize,
        mut join: impl FnMut(&[U], usize, T) -> Result<U, T>,
    ) -> Vec<U> {
        let mut filled = size(&first);
        let mut group = vec![first];
        while filled < max {
            let Ok(item) = self.queue.try_recv() else { break };
            match join(&group, filled, item) {
                Ok(member) => {
                    filled += size(&member);
                    group.push(member);
                }
                Err(item) => {
                    self.held = Some(item);
                    break;
                }
            }
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(items: &[usize]) -> Groups<usize> {
        let (sender, receiver) = mpsc::channel(items.len().max(1));
        for &item in items {
            sender.try_send(item).expect("room for every item");
        }
        Groups::new(receiver)
    }

    /// Items of size `item`, joining while they fit whole.
    fn fitting(max: usize) -> impl FnMut(&[usize], usize, usize) -> Result<usize, usize> {
        move |_, filled, item| if filled + item <= max { Ok(item) } else { Err(item) }
    }

    #[tokio::test]
    async fn a_group_takes_what_waits_up_to_its_size() {
        let mut groups = queue_of(&[1, 1, 1, 1, 1]);
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 3, |&item| item, fitting(3)), [1, 1, 1]);
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 3, |&item| item, fitting(3)), [1, 1]);
    }

    #[tokio::test]
    async fn an_item_that_does_not_fit_starts_the_next_group() {
        let mut groups = queue_of(&[2, 2, 3, 1]);
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 5, |&item| item, fitting(5)), [2, 2]);
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 5, |&item| item, fitting(5)), [3, 1]);
    }

    #[tokio::test]
    async fn an_item_that_does_not_belong_is_held_in_order() {
        // Odd and even never share a group (as two publishers never share an append).
        let mut groups = queue_of(&[1, 3, 4, 6, 5]);
        let same_parity =
            |group: &[usize], _, item: usize| if group[0] % 2 == item % 2 { Ok(item) } else { Err(item) };
        let mut seen = Vec::new();
        while let Some(first) = groups.first().await {
            seen.push(groups.gather(first, 10, |_| 1, same_parity));
            if seen.len() == 3 {
                break;
            }
        }
        assert_eq!(seen, [vec![1, 3], vec![4, 6], vec![5]]);
    }

    #[tokio::test]
    async fn a_lone_item_is_not_kept_waiting() {
        let (sender, receiver) = mpsc::channel(4);
        let mut groups = Groups::new(receiver);
        sender.send(7).await.unwrap();
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 100, |_| 1, fitting(100)), [7]);
    }

    #[tokio::test]
    async fn a_held_item_outlives_the_closed_queue() {
        let mut groups = queue_of(&[1, 9]);
        let first = groups.first().await.unwrap();
        assert_eq!(groups.gather(first, 5, |&item| item, fitting(5)), [1]);
        // The queue is empty and its sender gone; the held item still comes, then the end.
        assert_eq!(groups.first().await, Some(9));
        assert_eq!(groups.first().await, None);
    }

    #[tokio::test]
    async fn a_full_group_leaves_the_rest_in_the_queue() {
        let mut groups = queue_of(&[2, 2, 1]);
        let first = groups.first().await.unwrap();
        let mut offered = 0;
        let group = groups.gather(
            first,
            4,
            |&item| item,
            |_, _, item| {
                offered += 1;
                Ok(item)
            },
        );
        assert_eq!(group, [2, 2]);
        assert_eq!(offered, 1, "nothing is taken off the queue once the group is full");
        assert_eq!(groups.first().await, Some(1));
    }
}
