//! The message log: the session's notes and problems, newest first, and the banner that holds
//! the latest problem until it is dismissed. Every problem also goes to stderr.

use egui::RichText;

use super::theme;

/// Messages kept for the message list.
const MESSAGES_KEPT: usize = 50;

/// A line in the message list.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub is_problem: bool,
}

/// The log and its banner.
#[derive(Debug, Default)]
pub struct MessageLog {
    messages: Vec<Message>,
    banner: Option<String>,
}

impl MessageLog {
    /// A problem, in the banner, the log and on stderr.
    pub fn problem(&mut self, text: String) {
        eprintln!("error: {text}");
        self.banner = Some(text.clone());
        self.push(text, true);
    }

    /// A line in the log; the oldest goes once [`MESSAGES_KEPT`] are held.
    pub fn push(&mut self, text: String, is_problem: bool) {
        if self.messages.len() == MESSAGES_KEPT {
            self.messages.remove(0);
        }
        self.messages.push(Message { text, is_problem });
    }

    /// The latest problem with its "dismiss" button, wrapped at the window's edge: a long path
    /// must not push the rest out of sight.
    pub fn banner_ui(&mut self, ui: &mut egui::Ui) {
        let Some(banner) = self.banner.clone() else {
            return;
        };
        ui.horizontal(|ui| {
            if ui.small_button("dismiss").clicked() {
                self.banner = None;
            }
            ui.add(
                egui::Label::new(
                    RichText::new(format!("Problem: {banner}")).color(theme::PROBLEM_TEXT),
                )
                .wrap(),
            );
        });
    }

    /// The collapsible list, newest first, problems in their colour.
    pub fn ui(&self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new(format!("Messages ({})", self.messages.len()))
            .id_salt("messages")
            .show(ui, |ui| {
                for m in self.messages.iter().rev() {
                    let text = RichText::new(&m.text).small();
                    ui.label(if m.is_problem {
                        text.color(theme::PROBLEM_TEXT)
                    } else {
                        text
                    });
                }
            });
    }
}
