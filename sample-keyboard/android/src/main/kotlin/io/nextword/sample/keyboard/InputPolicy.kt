package io.nextword.sample.keyboard

import android.text.InputType
import android.view.inputmethod.EditorInfo

/**
 * What the keyboard may do in the field being edited, from its [EditorInfo]:
 * - [suggestions]: none in password fields, in fields that are not free text (numbers,
 *   phones, dates), or where the app sets `TYPE_TEXT_FLAG_NO_SUGGESTIONS`;
 * - [learning]: nothing typed is learned where there are no suggestions, nor where the app
 *   sets `IME_FLAG_NO_PERSONALIZED_LEARNING` (incognito tabs, private messages).
 */
data class InputPolicy(val suggestions: Boolean, val learning: Boolean) {
    companion object {
        val OFF = InputPolicy(suggestions = false, learning = false)

        fun of(info: EditorInfo?): InputPolicy {
            if (info == null) return OFF
            val type = info.inputType
            if (type and InputType.TYPE_MASK_CLASS != InputType.TYPE_CLASS_TEXT) return OFF
            if (isPassword(type)) return OFF
            if (type and InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS != 0) return OFF
            val private = info.imeOptions and EditorInfo.IME_FLAG_NO_PERSONALIZED_LEARNING != 0
            return InputPolicy(suggestions = true, learning = !private)
        }

        private fun isPassword(type: Int): Boolean =
            when (type and InputType.TYPE_MASK_VARIATION) {
                InputType.TYPE_TEXT_VARIATION_PASSWORD,
                InputType.TYPE_TEXT_VARIATION_VISIBLE_PASSWORD,
                InputType.TYPE_TEXT_VARIATION_WEB_PASSWORD -> true
                else -> false
            }
    }
}
