//! Posting lists for the memory retriever's inverted index: one term's (document number,
//! frequency) pairs in document order, as variable-length integers, with document numbers
//! stored as gaps: about 2 bytes a posting instead of 8. Every `SKIP`th posting starts a
//! block with its document number in full, so finding one document's frequency decodes at
//! most one block.

const SKIP: u32 = 64;

#[derive(Debug, Default)]
pub struct PostingList {
    bytes: Vec<u8>,
    len: u32,
    last_doc: u32,
    /// Per block: its first document number and where it starts in `bytes`.
    blocks: Vec<(u32, u32)>,
    /// The largest tf / (tf + norm) over the list: bounds what the term can add to a score.
    pub max_weight: f64,
}

impl PostingList {
    /// Appends a posting; document numbers must ascend.
    pub fn push(&mut self, doc: u32, frequency: u32) {
        if self.len.is_multiple_of(SKIP) {
            self.blocks.push((doc, self.bytes.len() as u32));
            write_varint(&mut self.bytes, doc);
        } else {
            write_varint(&mut self.bytes, doc - self.last_doc);
        }
        write_varint(&mut self.bytes, frequency);
        self.last_doc = doc;
        self.len += 1;
    }

    /// How many documents hold the term.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.blocks.shrink_to_fit();
    }

    /// (document number, frequency) in document order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut at = 0;
        let mut doc = 0;
        (0..self.len).map(move |i| {
            let value = read_varint(&self.bytes, &mut at);
            doc = if i.is_multiple_of(SKIP) {
                value
            } else {
                doc + value
            };
            (doc, read_varint(&self.bytes, &mut at))
        })
    }

    /// The frequency of the term in document `doc`, if it holds the term.
    pub fn frequency(&self, doc: u32) -> Option<u32> {
        let block = self.blocks.partition_point(|&(first, _)| first <= doc);
        let (first, start) = *self.blocks.get(block.checked_sub(1)?)?;
        let mut at = start as usize;
        let mut current = first;
        let in_block = (self.len - (block as u32 - 1) * SKIP).min(SKIP);
        for i in 0..in_block {
            let value = read_varint(&self.bytes, &mut at);
            if i > 0 {
                current += value;
            }
            let frequency = read_varint(&self.bytes, &mut at);
            if current >= doc {
                return (current == doc).then_some(frequency);
            }
        }
        None
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
fn read_varint(bytes: &[u8], at: &mut usize) -> u32 {
    // Most gaps and frequencies fit one byte.
    if let Some(&byte) = bytes.get(*at)
        && byte < 0x80
    {
        *at += 1;
        return u32::from(byte);
    }
    let mut value = 0u32;
    let mut shift = 0;
    while let Some(&byte) = bytes.get(*at) {
        *at += 1;
        value |= u32::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_lists_read_back_what_was_written() {
        let mut list = PostingList::default();
        let mut written: Vec<(u32, u32)> = (0..300).map(|i| (i * 3 + 1, i % 7 + 1)).collect();
        written.extend([(70_000, 300), (u32::MAX, u32::MAX)]);
        for &(doc, frequency) in &written {
            list.push(doc, frequency);
        }
        assert_eq!(list.iter().collect::<Vec<_>>(), written);
        for &(doc, frequency) in &written {
            assert_eq!(list.frequency(doc), Some(frequency), "doc {doc}");
        }
        for absent in [0, 2, 3, 500, 899, 901, 69_999, 70_001] {
            assert_eq!(list.frequency(absent), None, "doc {absent}");
        }
        assert_eq!(PostingList::default().frequency(5), None);
    }
}
