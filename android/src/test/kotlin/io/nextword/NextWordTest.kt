package io.nextword

import io.nextword.ffi.NextwordException
import io.nextword.ffi.SuggestionKind
import java.io.File
import java.nio.file.Files
import java.util.concurrent.Callable
import java.util.concurrent.CyclicBarrier
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.BeforeClass
import org.junit.Test

/** The generated bindings and the Kotlin layer against the real native library and model. */
class NextWordTest {
    companion object {
        val bundleDir = File(System.getProperty("nextword.bundle.dir", "../models/en"))
        lateinit var nextWord: NextWord

        @BeforeClass @JvmStatic
        fun openModel() {
            nextWord = NextWord.open(bundleDir)
        }

        @AfterClass @JvmStatic
        fun closeModel() = nextWord.close()

        fun copyOfBundle(): File {
            val dir = Files.createTempDirectory("nextword-bundle").toFile()
            for (file in bundleDir.listFiles()!!) file.copyTo(File(dir, file.name))
            return dir
        }
    }

    @Test
    fun nextWordsAfterASpaceAreWords() = runBlocking {
        val suggestions = nextWord.suggest("I will see you ", max = 3)
        assertEquals(suggestions.toString(), 3, suggestions.size)
        for (s in suggestions) {
            assertEquals(SuggestionKind.NEXT_WORD, s.kind)
            assertTrue("not a word: '${s.text}'", s.text.isNotBlank() && s.text.none { it.isWhitespace() })
            assertTrue("score ${s.score}", s.score > 0f && s.score <= 1f)
        }
        assertEquals(suggestions.sortedByDescending { it.score }, suggestions)
        // A model of English puts one of these among its three best after "I will see you".
        val likely = setOf("soon", "tomorrow", "then", "there", "later", "again", "at", "in", "on", "next", "all", "guys", "today", "tonight", "when", "and", "again", "around")
        assertTrue("$suggestions", suggestions.any { it.text in likely })
    }

    @Test
    fun completionsStartWithThePartialWord() = runBlocking {
        val suggestions = nextWord.suggest("see you tom", max = 3)
        assertTrue("$suggestions", suggestions.isNotEmpty())
        for (s in suggestions) {
            assertEquals(SuggestionKind.COMPLETION, s.kind)
            assertTrue(s.text, s.text.lowercase().startsWith("tom"))
        }
    }

    @Test
    fun infoDescribesTheBundle() {
        val info = nextWord.info
        assertEquals("en", info.language)
        assertTrue("${info.parameters}", info.parameters > 1_000_000uL)
        assertTrue("${info.vocabSize}", info.vocabSize > 1000uL)
    }

    @Test
    fun emptyAndOddInputAreNotErrors() = runBlocking<Unit> {
        assertTrue(nextWord.suggest("", max = 3).size <= 3)
        assertEquals(emptyList<Any>(), nextWord.suggest("hello ", max = 0))
        assertTrue(nextWord.suggest("\u0000\uFFFF \uD83D\uDE00 ", max = 3).size <= 3)
        assertTrue(nextWord.suggest("word ".repeat(20_000), max = 3).size <= 3)
        assertThrows(IllegalArgumentException::class.java) { nextWord.suggestBlocking("x", max = -1) }
    }

    @Test
    fun missingBundleIsBundleNotFound() {
        val e = assertThrows(NextwordException.BundleNotFound::class.java) {
            NextWord.open(File(bundleDir, "no-such-bundle"))
        }
        assertTrue(e.reason, e.reason.contains("manifest.json"))
    }

    @Test
    fun modifiedModelIsBundleTampered() {
        val dir = copyOfBundle()
        try {
            val model = File(dir, "model.onnx")
            val bytes = model.readBytes()
            bytes[bytes.size / 2] = (bytes[bytes.size / 2].toInt() xor 0x01).toByte()
            model.writeBytes(bytes)
            val e = assertThrows(NextwordException.BundleTampered::class.java) { NextWord.open(dir) }
            assertTrue(e.reason, e.reason.contains("model.onnx"))
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun garbageManifestIsBundleInvalid() {
        val dir = copyOfBundle()
        try {
            File(dir, "manifest.json").writeText("{ not json")
            assertThrows(NextwordException.BundleInvalid::class.java) { NextWord.open(dir) }
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun eightThreadsGetTheSameAnswersAsOne() {
        val texts = listOf("I will see you ", "see you tom", "Thank you for the ", "how are ", "the weather is ", "I am going to th", "Good morning ", "what do you ")
        val expected = texts.associateWith { nextWord.suggestBlocking(it, 3) }
        val threads = 8
        val start = CyclicBarrier(threads)
        val pool = Executors.newFixedThreadPool(threads)
        try {
            val results = (0 until threads).map { t ->
                pool.submit(Callable {
                    start.await()
                    (0 until 3 * texts.size).map { i ->
                        val text = texts[(i + t) % texts.size]
                        text to nextWord.suggestBlocking(text, 3)
                    }
                })
            }.flatMap { it.get(5, TimeUnit.MINUTES) }
            assertEquals(threads * 3 * texts.size, results.size)
            for ((text, got) in results) {
                val want = expected.getValue(text)
                // Same words in the same order; scores within 1%. A call reuses the cached keys and
                // values of whatever context came before it that shares a start, so its forward
                // pass is split differently: float sums round differently, and an activation on
                // an int8 rounding boundary can move by a step (0.16% seen on a score).
                assertEquals(text, want.map { it.text to it.kind }, got.map { it.text to it.kind })
                for ((w, g) in want.zip(got)) {
                    assertTrue("$text: $w vs $g", Math.abs(w.score - g.score) <= 0.01f * w.score)
                }
            }
        } finally {
            pool.shutdownNow()
        }
    }

    @Test
    fun learnedWordsAreSuggestedKeptBlockedAndNeverLearnedInIncognito() = runBlocking {
        val userDir = Files.createTempDirectory("nextword-user").toFile()
        val config = NextWord.defaultConfig().apply { this.userDir = userDir.path }
        NextWord.open(bundleDir, config).use { own ->
            assertTrue(own.suggest("I met Sao", 3).none { it.text == "Saoirse" })
            assertTrue(own.learn("Saoirse said hello. "))
            assertTrue(own.learn("I met Saoirse today. "))
            assertTrue(own.suggest("I met Sao", 3).toString(), own.suggest("I met Sao", 3).any { it.text == "Saoirse" })
            own.setIncognito(true)
            assertTrue(!own.learn("Zebedee is my password. "))
            own.setIncognito(false)
        }
        // Persisted in userDir: a new instance knows the word; the incognito text left no trace.
        NextWord.open(bundleDir, config).use { own ->
            val words = own.learnedWords().map { it.word }
            assertTrue(words.toString(), "Saoirse" in words && "Zebedee" !in words)
            assertTrue(own.blockWord("saoirse"))
            assertTrue(own.suggest("I met Sao", 3).none { it.text.equals("Saoirse", ignoreCase = true) })
            assertTrue(own.unblockWord("Saoirse"))
            assertTrue(own.removeWord("Saoirse"))
            assertTrue(own.learnedWords().none { it.word == "Saoirse" })
        }
        userDir.deleteRecursively()
        Unit
    }

    @Test
    fun callsAfterCloseThrowClosed() {
        val own = NextWord.open(bundleDir)
        assertTrue(own.suggestBlocking("I will see you ", 3).isNotEmpty())
        own.close()
        own.close()
        assertThrows(NextwordException.Closed::class.java) { own.suggestBlocking("I will see you ", 3) }
        assertThrows(NextwordException.Closed::class.java) { runBlocking { own.suggest("hello ", 3) } }
        assertThrows(NextwordException.Closed::class.java) { own.info }
    }

    @Test
    fun closeWhileOtherThreadsSuggestGivesClosedNotACrash() {
        val own = NextWord.open(bundleDir)
        val pool = Executors.newFixedThreadPool(4)
        try {
            val callsBeforeClosed = (0 until 4).map {
                pool.submit(Callable {
                    var calls = 0
                    try {
                        while (true) {
                            own.suggestBlocking(if (calls % 2 == 0) "see you tom" else "see you ", 3)
                            calls++
                        }
                    } catch (e: NextwordException.Closed) {
                        // Expected once close() has run.
                    }
                    calls
                })
            }
            Thread.sleep(200)
            own.close()
            for (calls in callsBeforeClosed) assertTrue(calls.get(5, TimeUnit.MINUTES) >= 0)
        } finally {
            pool.shutdownNow()
        }
    }
}
