import pytest
from agent_support import smollm2_tokenizer

from memtrain.errors import ConfigError
from memtrain.trainer import prompts
from memtrain.trainer.chunking import chat_prompt_ids


def test_update_prompt_is_memagents_with_the_masked_entity_problem():
    text = prompts.render_update(prompts.MEMTRAIN_PROBLEM, "No previous memory", "Paris is in [MASK].")
    assert text.startswith(
        "You are presented with a problem, a section of an article that may contain the answer"
    )
    assert (
        "<problem> Based on the entire article, which entity is represented by the [MASK] placeholder? "
        "</problem>\n<memory> No previous memory </memory>\n"
        "<section> Paris is in [MASK]. </section>\n\nUpdated memory:"
    ) in text


def test_answer_prompt_has_no_section_and_asks_for_a_boxed_answer():
    text = prompts.render_answer("Who wrote Hamlet?", "Shakespeare wrote plays.")
    assert r"put the answer in \boxed{}." in text
    assert "<problem> Who wrote Hamlet? </problem>\n<memory> Shakespeare wrote plays. </memory>" in text
    assert "<section>" not in text


def test_recall_prompt_shows_memory_and_the_section_with_target():
    text = prompts.render_recall("Oslo is the capital.", "[TARGET] is a city in [MASK].")
    assert text.startswith("You are presented with a memory from previously read sections")
    assert r"predict the entity marked by [TARGET] and put the answer in \boxed{}" in text
    assert text.endswith(
        "<memory> Oslo is the capital. </memory>\n<section> [TARGET] is a city in [MASK]. </section>"
    )
    assert "<problem>" not in text


def test_downstream_tasks_supply_their_own_problem_text():
    question = "Which band released the album {Nevermind}?"  # braces in the problem are kept as they are
    assert f"<problem> {question} </problem>" in prompts.render_update(question, "m", "c")


def test_custom_templates_must_keep_every_placeholder_of_their_call():
    merged = prompts.check_templates({"answer": "Q: {problem}\nM: {memory}\nAnswer in \\boxed{{}}."})
    assert merged["update"] == prompts.UPDATE_TEMPLATE
    with pytest.raises(ConfigError, match="must have exactly"):
        prompts.check_templates({"update": "{problem} {memory}"})  # the chunk would be silently dropped
    with pytest.raises(ConfigError, match="unknown prompt template"):
        prompts.check_templates({"summary": "{memory}"})


def test_each_call_is_a_fresh_single_message_chat_with_the_models_template():
    tokenizer = smollm2_tokenizer()
    content = prompts.render_answer(prompts.MEMTRAIN_PROBLEM, "No previous memory")
    text = tokenizer.decode(chat_prompt_ids(tokenizer, content))
    assert text.count("<|im_start|>user") == 1
    assert text.endswith("<|im_start|>assistant\n")
    assert content in text
