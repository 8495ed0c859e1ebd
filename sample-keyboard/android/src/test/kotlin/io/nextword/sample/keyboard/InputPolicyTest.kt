package io.nextword.sample.keyboard

import android.text.InputType.TYPE_CLASS_DATETIME
import android.text.InputType.TYPE_CLASS_NUMBER
import android.text.InputType.TYPE_CLASS_PHONE
import android.text.InputType.TYPE_CLASS_TEXT
import android.text.InputType.TYPE_NUMBER_VARIATION_PASSWORD
import android.text.InputType.TYPE_TEXT_FLAG_CAP_SENTENCES
import android.text.InputType.TYPE_TEXT_FLAG_MULTI_LINE
import android.text.InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS
import android.text.InputType.TYPE_TEXT_VARIATION_EMAIL_ADDRESS
import android.text.InputType.TYPE_TEXT_VARIATION_PASSWORD
import android.text.InputType.TYPE_TEXT_VARIATION_SHORT_MESSAGE
import android.text.InputType.TYPE_TEXT_VARIATION_VISIBLE_PASSWORD
import android.text.InputType.TYPE_TEXT_VARIATION_WEB_PASSWORD
import android.view.inputmethod.EditorInfo
import org.junit.Assert.assertEquals
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.RobolectricTestRunner
import org.robolectric.annotation.Config

@RunWith(RobolectricTestRunner::class)
@Config(sdk = [34])
class InputPolicyTest {
    private fun policy(type: Int, options: Int = 0) =
        InputPolicy.of(EditorInfo().apply { inputType = type; imeOptions = options })

    @Test
    fun freeTextGetsSuggestions() {
        for (type in listOf(
            TYPE_CLASS_TEXT,
            TYPE_CLASS_TEXT or TYPE_TEXT_FLAG_CAP_SENTENCES or TYPE_TEXT_FLAG_MULTI_LINE,
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_SHORT_MESSAGE,
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_EMAIL_ADDRESS,
        )) assertEquals("type $type", InputPolicy(suggestions = true, learning = true), policy(type))
    }

    @Test
    fun noPersonalizedLearningKeepsSuggestionsButLearnsNothing() {
        assertEquals(
            InputPolicy(suggestions = true, learning = false),
            policy(TYPE_CLASS_TEXT, EditorInfo.IME_FLAG_NO_PERSONALIZED_LEARNING),
        )
    }

    @Test
    fun passwordsNonTextAndNoSuggestionsFieldsGetNone() {
        for (type in listOf(
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_PASSWORD,
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_VISIBLE_PASSWORD,
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_WEB_PASSWORD,
            TYPE_CLASS_TEXT or TYPE_TEXT_VARIATION_PASSWORD or TYPE_TEXT_FLAG_NO_SUGGESTIONS,
            TYPE_CLASS_NUMBER or TYPE_NUMBER_VARIATION_PASSWORD,
            TYPE_CLASS_NUMBER,
            TYPE_CLASS_PHONE,
            TYPE_CLASS_DATETIME,
            TYPE_CLASS_TEXT or TYPE_TEXT_FLAG_NO_SUGGESTIONS,
            TYPE_CLASS_TEXT or TYPE_TEXT_FLAG_MULTI_LINE or TYPE_TEXT_FLAG_NO_SUGGESTIONS,
        )) assertEquals("type $type", InputPolicy.OFF, policy(type))
        assertEquals(InputPolicy.OFF, InputPolicy.of(null))
    }
}
