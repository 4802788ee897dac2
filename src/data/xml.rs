//! A minimal XML element tree for annotation files: element names, their text and the line each
//! element starts on, so that a diagnostic can point at it.
//!
//! It keeps no attributes and resolves only the predefined entities and character references:
//! enough for Pascal VOC, not a general XML library. It never panics on bad input; a document
//! it cannot read becomes an [`XmlError`] with the line of the problem.

use quick_xml::events::{BytesRef, Event};

/// One element: its local name, its text (all text children joined) and its child elements.
#[derive(Debug, Default)]
pub(crate) struct XmlNode {
    pub name: String,
    pub text: String,
    /// 1-based line of the opening tag.
    pub line: usize,
    pub children: Vec<XmlNode>,
}

impl XmlNode {
    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Why a whole annotation file cannot be read.
#[derive(Clone, Debug, PartialEq)]
pub struct XmlError {
    pub line: usize,
    pub message: String,
}

/// Parses `text` into a tree whose root is the document (its children are the top elements).
pub(crate) fn parse_tree(text: &str) -> Result<XmlNode, XmlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = LineIndex::new(text);
    let mut reader = quick_xml::Reader::from_str(text);
    // The document itself sits at the bottom; each open element is pushed above its parent.
    let mut stack = vec![XmlNode::default()];
    loop {
        let start = reader.buffer_position();
        let event = reader.read_event().map_err(|e| XmlError {
            line: lines.line_at(reader.error_position()),
            message: format!("not valid XML: {e}"),
        })?;
        if matches!(event, Event::Eof) {
            break;
        }
        apply_event(&mut stack, event, start, &lines)?;
    }
    finish_document(stack, &lines)
}

/// Byte offsets → 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
    text_len: usize,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            starts,
            text_len: text.len(),
        }
    }

    /// The line holding byte `position` (clamped to the text).
    fn line_at(&self, position: u64) -> usize {
        let position = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(self.text_len);
        self.starts
            .partition_point(|&start| start <= position)
            .max(1)
    }
}

/// Applies one reader event, which began at byte `start`, to the stack of open elements.
fn apply_event(
    stack: &mut Vec<XmlNode>,
    event: Event<'_>,
    start: u64,
    lines: &LineIndex,
) -> Result<(), XmlError> {
    match event {
        Event::Start(e) => stack.push(element(e.local_name().as_ref(), lines.line_at(start + 1))),
        Event::Empty(e) => {
            let node = element(e.local_name().as_ref(), lines.line_at(start + 1));
            if let Some(parent) = stack.last_mut() {
                parent.children.push(node);
            }
        }
        Event::End(_) => close_element(stack, lines.line_at(start))?,
        Event::Text(t) => append_text(stack, t.decode().ok().as_deref()),
        Event::CData(c) => append_text(stack, c.decode().ok().as_deref()),
        Event::GeneralRef(r) => append_text(stack, resolve_reference(&r).as_deref()),
        _ => {}
    }
    Ok(())
}

fn element(raw_name: &[u8], line: usize) -> XmlNode {
    XmlNode {
        name: String::from_utf8_lossy(raw_name).into_owned(),
        line,
        ..XmlNode::default()
    }
}

/// Moves the innermost open element into its parent's children.
fn close_element(stack: &mut Vec<XmlNode>, line: usize) -> Result<(), XmlError> {
    if stack.len() < 2 {
        return Err(XmlError {
            line,
            message: "a closing tag without its opening tag".to_string(),
        });
    }
    if let Some(node) = stack.pop() {
        if let Some(parent) = stack.last_mut() {
            parent.children.push(node);
        }
    }
    Ok(())
}

/// Adds text to the innermost open element; text that could not be decoded is left out.
fn append_text(stack: &mut [XmlNode], text: Option<&str>) {
    if let (Some(node), Some(text)) = (stack.last_mut(), text) {
        node.text.push_str(text);
    }
}

/// A character reference (`&#233;`) or a predefined entity (`&amp;`) as text; `None` for any
/// other entity, which would need a DTD.
fn resolve_reference(reference: &BytesRef<'_>) -> Option<String> {
    match reference.resolve_char_ref() {
        Ok(Some(ch)) => Some(ch.to_string()),
        _ => reference
            .decode()
            .ok()
            .and_then(|name| quick_xml::escape::resolve_predefined_entity(&name))
            .map(str::to_string),
    }
}

/// The document once the input has ended: every element closed and at least one present.
fn finish_document(mut stack: Vec<XmlNode>, lines: &LineIndex) -> Result<XmlNode, XmlError> {
    if stack.len() != 1 {
        let open = stack.last().map(|n| n.name.clone()).unwrap_or_default();
        return Err(XmlError {
            line: lines.line_at(lines.text_len as u64),
            message: format!("the file ends before </{open}>"),
        });
    }
    let document = stack.pop().unwrap_or_default();
    if document.children.is_empty() {
        return Err(XmlError {
            line: 1,
            message: "the document has no element".to_string(),
        });
    }
    Ok(document)
}
