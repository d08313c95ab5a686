//! The REPL as the console a `console` operator asks: the question shows above the line
//! editor's prompt and the answer is read through it (a JSON answer may span lines).

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use tokio::sync::{Mutex, Notify};

use super::editor::{Editor, Input, Printer};
use crate::value::from_json;
use crate::worker::operator::ConsoleIo;

pub struct ReplConsole {
    pub editor: Rc<Mutex<Editor>>,
    pub printer: Rc<Printer>,
    /// Ctrl-C at the question interrupts the chunk or `:run` waiting on it.
    pub interrupt: Rc<Notify>,
}

impl ConsoleIo for ReplConsole {
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>> {
        let (editor, printer, interrupt) = (self.editor.clone(), self.printer.clone(), self.interrupt.clone());
        Box::pin(async move {
            // The last line is the prompt; the lines above it are shown as they are.
            let question = question.trim_start_matches('\n');
            let (body, prompt) = match question.rfind('\n') {
                Some(i) => (&question[..i], &question[i + 1..]),
                None => ("", question),
            };
            if !body.is_empty() {
                printer.err(body);
            }
            let mut editor = editor.lock().await;
            let no_completion = |_: &str, pos: usize| (pos, Vec::new());
            let mut answer = match editor.read(prompt, &no_completion).await {
                Input::Line(line) => line,
                Input::Interrupted { .. } => {
                    interrupt.notify_waiters();
                    return None;
                }
                Input::Eof => return None,
            };
            while answer.trim_start().starts_with(['{', '[']) && from_json(&answer).is_err() {
                match editor.read(">> ", &no_completion).await {
                    Input::Line(more) => {
                        answer.push('\n');
                        answer.push_str(&more);
                    }
                    Input::Interrupted { .. } => {
                        interrupt.notify_waiters();
                        return None;
                    }
                    Input::Eof => break,
                }
            }
            Some(answer)
        })
    }
}
