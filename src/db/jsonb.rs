//! SQLite's binary JSON (JSONB, <https://sqlite.org/jsonb.html>), written directly: the
//! SQLite writer hands a batch of orders to one `INSERT … FROM jsonb_each(?)` as a JSONB
//! blob, which SQLite reads as it is, where JSON text would be escaped here, then parsed and
//! translated to JSONB there, for every batch.
//!
//! Only what a batch needs: arrays, integers and text. An element is a header — its type in
//! the low four bits; its payload's size in the high four bits if under 12, else 12, 13, 14
//! or 15 there and the size in the next 1, 2, 4 or 8 bytes, big-endian — then its payload.

/// An integer: its payload is the number in decimal ASCII.
const INT: u8 = 3;
/// Text taken as it is (no JSON escapes to decode), so any UTF-8 goes in unchanged.
const TEXT_RAW: u8 = 10;
/// An array: its payload is its elements, one after the other.
const ARRAY: u8 = 11;

/// A JSONB array being written, element by element.
#[derive(Debug, Default)]
pub struct Array {
    elements: Vec<u8>,
}

impl Array {
    /// An empty array with room for `bytes` of elements.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            elements: Vec::with_capacity(bytes),
        }
    }

    /// Appends an integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        self.element(INT, digits.format(value).as_bytes())
    }

    /// Appends a string.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.element(TEXT_RAW, value.as_bytes())
    }

    /// Appends `array` as one element (a nested array).
    pub fn array(&mut self, array: &Array) -> &mut Self {
        self.element(ARRAY, &array.elements)
    }

    /// Empties the array, keeping its room, to write another.
    pub fn clear(&mut self) {
        self.elements.clear();
    }

    /// The array as a JSONB value.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut value = Vec::with_capacity(self.elements.len() + 9);
        header(&mut value, ARRAY, self.elements.len());
        value.extend_from_slice(&self.elements);
        value
    }

    fn element(&mut self, kind: u8, payload: &[u8]) -> &mut Self {
        header(&mut self.elements, kind, payload.len());
        self.elements.extend_from_slice(payload);
        self
    }
}

/// The header of an element of type `kind` whose payload is `size` bytes.
fn header(out: &mut Vec<u8>, kind: u8, size: usize) {
    match size {
        0..=11 => out.push(((size as u8) << 4) | kind),
        12..=0xff => out.extend_from_slice(&[0xc0 | kind, size as u8]),
        0x100..=0xffff => {
            out.push(0xd0 | kind);
            out.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => match u32::try_from(size) {
            Ok(size) => {
                out.push(0xe0 | kind);
                out.extend_from_slice(&size.to_be_bytes());
            }
            Err(_) => {
                out.push(0xf0 | kind);
                out.extend_from_slice(&(size as u64).to_be_bytes());
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_elements_carry_their_size_in_the_header_byte() {
        let mut row = Array::default();
        row.text("ab").int(-7);
        assert_eq!(row.into_bytes(), [0x6b, 0x2a, b'a', b'b', 0x23, b'-', b'7']);
    }

    #[test]
    fn larger_payloads_take_a_size_of_one_two_or_four_bytes() {
        let mut out = Vec::new();
        header(&mut out, TEXT_RAW, 12);
        header(&mut out, TEXT_RAW, 255);
        header(&mut out, ARRAY, 256);
        header(&mut out, ARRAY, 70_000);
        assert_eq!(
            out,
            [
                0xca, 12, 0xca, 255, 0xdb, 0x01, 0x00, 0xeb, 0x00, 0x01, 0x11, 0x70
            ]
        );
    }

    #[test]
    fn arrays_nest() {
        let mut row = Array::default();
        row.text("x");
        let mut rows = Array::default();
        rows.array(&row).array(&row);
        assert_eq!(
            rows.into_bytes(),
            [0x6b, 0x2b, 0x1a, b'x', 0x2b, 0x1a, b'x']
        );
    }
}
