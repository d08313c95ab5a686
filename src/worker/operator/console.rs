//! The console operator: shows the person at the terminal the rendered prompt and the input,
//! and takes their answer (a line of text, or JSON, which may span lines).

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

use super::{OperatorSetup, render_prompt};
use crate::value::{Value, from_json};
use crate::worker::{Job, Spawner, Verdict, WorkerError, WorkerResult};

/// Where a console operator asks its question: the terminal, or the REPL's line editor.
pub trait ConsoleIo {
    /// Shows `question` and returns the answer's text; `None` when the console closed.
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>>;
}

/// The process's stderr and stdin. Questions are asked one at a time.
#[derive(Default)]
pub struct StdConsole {
    lines: Rc<tokio::sync::Mutex<Option<Lines<BufReader<Stdin>>>>>,
}

impl ConsoleIo for StdConsole {
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>> {
        let lines = self.lines.clone();
        Box::pin(async move {
            let mut lines = lines.lock().await;
            let lines = lines.get_or_insert_with(|| BufReader::new(tokio::io::stdin()).lines());
            eprint!("{question}");
            let mut answer = lines.next_line().await.ok()??;
            // A JSON answer may span lines: keep reading while it is unfinished.
            while answer.trim_start().starts_with(['{', '[']) && from_json(&answer).is_err() {
                match lines.next_line().await.ok().flatten() {
                    Some(more) => {
                        answer.push('\n');
                        answer.push_str(&more);
                    }
                    None => break,
                }
            }
            Some(answer)
        })
    }
}

/// Asks the console for each attempt.
pub struct ConsoleOperator {
    /// The seat and its prompt template.
    pub setup: OperatorSetup,
    /// The console to ask on.
    pub io: Rc<dyn ConsoleIo>,
}

/// The question is a wait for a signal named after the seat and the attempt (see
/// `TaskHost::question_signal`), asked on the console at the same time: an answer typed there
/// is delivered as that signal, and one sent from elsewhere (`swarm runs signal`, the REPL's
/// `:answer`) settles it without the console. A question whose answer is already in the
/// journal (a run resumed after it was answered) is not asked again.
impl Spawner for ConsoleOperator {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let io = self.io.clone();
        let prompt = render_prompt(&self.setup, &job.input);
        let operator = self.setup.operator.clone();
        Box::pin(async move {
            let prompt = prompt.map_err(|e| WorkerError::new(format!("agent '{}': {e}", job.agent)))?;
            let (signal, mut wait) = super::ask(&job, &operator, prompt.as_deref());
            // Answered before (in the journal of a resumed run): no need to ask.
            if let std::task::Poll::Ready(answered) = futures::poll!(&mut wait) {
                return answered.map(Verdict::Pass).map_err(|e| WorkerError::new(e.message));
            }
            let run_id = job.task_id.rsplit_once('.').map_or(&*job.task_id, |(run, _)| run);
            let mut question = format!(
                "\n── operator {operator} · agent {} · task {} (attempt {})\n",
                job.agent, job.task_id, job.attempt
            );
            if let Some(prompt) = prompt {
                question.push_str(&prompt);
                question.push('\n');
            }
            let input = serde_json::to_string_pretty(&job.input).unwrap_or_default();
            question.push_str(&format!(
                "input: {input}\n(or from another terminal: swarm runs signal {run_id} {signal} --value JSON)\n\
                 answer (text, or JSON): "
            ));
            let answered = tokio::select! {
                answered = &mut wait => answered,
                typed = io.ask(question) => {
                    let typed = typed.ok_or_else(|| {
                        WorkerError::new(format!("operator '{operator}': the console closed before answering"))
                    })?;
                    job.host.signal(&signal, parse_answer(&typed));
                    wait.await
                }
            };
            answered.map(Verdict::Pass).map_err(|e| WorkerError::new(e.message))
        })
    }
}

/// A console nobody answers at: it shows the question and waits for ever, so the question
/// is answered only by its signal (`swarm run --detach`, where the process leaves the run).
pub struct UnattendedConsole;

impl ConsoleIo for UnattendedConsole {
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>> {
        let question = question.trim_end_matches("answer (text, or JSON): ").to_string();
        Box::pin(async move {
            eprint!("{question}");
            std::future::pending().await
        })
    }
}

/// JSON when the answer is JSON, else the text as it was typed (without the line end).
pub fn parse_answer(answer: &str) -> Value {
    let trimmed = answer.trim();
    match from_json(trimmed) {
        Ok(v) => v,
        Err(_) => Value::from(answer.trim_end_matches(['\r', '\n'])),
    }
}

/// A console whose answers are given in advance, for tests and scripted sessions.
#[derive(Default)]
pub struct ScriptedConsole {
    /// The answers still to give, in order.
    pub answers: RefCell<std::collections::VecDeque<String>>,
    /// The questions asked so far, in order.
    pub questions: RefCell<Vec<String>>,
}

impl ConsoleIo for Rc<ScriptedConsole> {
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>> {
        self.questions.borrow_mut().push(question);
        let answer = self.answers.borrow_mut().pop_front();
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_when_they_parse_and_text_otherwise() {
        assert_eq!(parse_answer("{\"ok\": true}\n"), from_json(r#"{"ok":true}"#).unwrap());
        assert_eq!(parse_answer("42"), Value::int(42));
        assert_eq!(parse_answer("looks good\r\n"), Value::from("looks good"));
        assert_eq!(parse_answer("  spaced  "), Value::from("  spaced  "));
    }
}
