package io.nextword

import io.nextword.ffi.Suggestion
import io.nextword.ffi.SuggestionKind
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.ExperimentalCoroutinesApi
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.test.StandardTestDispatcher
import kotlinx.coroutines.test.TestScope
import kotlinx.coroutines.test.advanceTimeBy
import kotlinx.coroutines.test.advanceUntilIdle
import kotlinx.coroutines.test.runCurrent
import kotlinx.coroutines.withTimeout
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

@OptIn(ExperimentalCoroutinesApi::class)
class LatestKeystrokeWinsTest {
    private fun word(text: String) = Suggestion(text, 0.5f, SuggestionKind.COMPLETION)

    /** A source that takes 10 ms (virtual time) and records what it was asked. */
    private class SlowSource {
        val asked = mutableListOf<String>()
        suspend fun suggest(text: String): List<Suggestion> {
            asked += text
            delay(10)
            return listOf(Suggestion("$text!", 0.5f, SuggestionKind.COMPLETION))
        }
    }

    @Test
    fun aBurstOfKeystrokesRunsAndDeliversOnlyTheLast() {
        val scope = TestScope(StandardTestDispatcher())
        val source = SlowSource()
        val delivered = mutableListOf<String>()
        val helper = LatestKeystrokeWins(scope, 0, source::suggest) { text, _ -> delivered += text }
        for (text in listOf("h", "he", "hel", "hell", "hello")) helper.onTextChanged(text)
        scope.advanceUntilIdle()
        assertEquals(listOf("hello"), source.asked)
        assertEquals(listOf("hello"), delivered)
    }

    @Test
    fun aRequestOvertakenWhileRunningIsDropped() {
        val scope = TestScope(StandardTestDispatcher())
        val source = SlowSource()
        val delivered = mutableListOf<Pair<String, List<Suggestion>>>()
        val helper = LatestKeystrokeWins(scope, 0, source::suggest) { text, s -> delivered += text to s }
        helper.onTextChanged("se")
        scope.advanceTimeBy(5)
        scope.runCurrent()
        helper.onTextChanged("see")
        scope.advanceUntilIdle()
        assertEquals(listOf("se", "see"), source.asked)
        assertEquals(listOf("see" to listOf(word("see!"))), delivered)
    }

    @Test
    fun debounceWaitsForAPauseInTyping() {
        val scope = TestScope(StandardTestDispatcher())
        val source = SlowSource()
        val delivered = mutableListOf<String>()
        val helper = LatestKeystrokeWins(scope, 50, source::suggest) { text, _ -> delivered += text }
        helper.onTextChanged("t")
        scope.advanceTimeBy(30)
        helper.onTextChanged("to")
        scope.advanceTimeBy(30)
        helper.onTextChanged("tom")
        scope.advanceUntilIdle()
        assertEquals(listOf("tom"), source.asked)
        assertEquals(listOf("tom"), delivered)
    }

    @Test
    fun cancelDropsThePendingRequest() {
        val scope = TestScope(StandardTestDispatcher())
        val source = SlowSource()
        val delivered = mutableListOf<String>()
        val helper = LatestKeystrokeWins(scope, 0, source::suggest) { text, _ -> delivered += text }
        helper.onTextChanged("hel")
        helper.cancel()
        scope.advanceUntilIdle()
        assertEquals(emptyList<String>(), delivered)
    }

    @Test
    fun withTheRealModelTheLastKeystrokesSuggestionsArrive() = runBlocking {
        NextWord.open(NextWordTest.bundleDir).use { nextWord ->
            val last = CompletableDeferred<Pair<String, List<Suggestion>>>()
            val helper = LatestKeystrokeWins(this, nextWord, max = 3) { text, s ->
                if (text == "see you tom") last.complete(text to s)
            }
            for (text in listOf("s", "se", "see", "see ", "see y", "see yo", "see you", "see you ", "see you t", "see you to", "see you tom")) {
                helper.onTextChanged(text)
            }
            val (text, suggestions) = withTimeout(120_000) { last.await() }
            assertEquals("see you tom", text)
            assertTrue("$suggestions", suggestions.isNotEmpty() && suggestions.all { it.text.lowercase().startsWith("tom") })
        }
    }
}
